"""Reproductions: each preset's table (``harness reproduce``) as ours beside the paper's.

A run belongs to every preset row whose resolved config it matches, seeds aside
(:mod:`.preset_rows`), so a run shared by two tables shows in both and every
row of a table is listed: with its numbers (mean over seeds), or as failed,
interrupted or not run. Everything a row's runs recorded is shown: the main
test pass, the unshared step-2 system of alternating training (Faster R-CNN
Table 3), the SVMs on Fast R-CNN's fc7 (Fast R-CNN Table 8), the truncated-SVD
pass (Fast R-CNN Table 4: mAP, test and head time,
and the test speed-up over the table's R-CNN row with and without it), the
training stages (stage-wise, alternating, R-CNN), the test time without the
proposal stage, and for a figure about proposals each row's recall against
IoU (:func:`.recall_iou.preset_table`). The published rows of the
same paper and table follow, and the differences of setting are spelled out.
"""
from __future__ import annotations

from typing import Any

import pandas as pd

from .blocks import (
    DASH,
    Note,
    Section,
    Table,
    display_frame,
    fmt_num,
    fmt_pm,
    fmt_ratio,
)
from .preset_rows import PresetTable, RowRuns, preset_tables
from .recall_iou import preset_table as recall_table
from .records import RecordSet
from .sections import mean_std
from .verdicts import interval


def _settings(g: pd.DataFrame) -> str:
    parts = []
    for col, label in (("device_name", "device"), ("backbone", "backbone"), ("dataset", "data"),
                       ("init_kind", "init"), ("profile", "scale")):
        values = sorted({str(v) for v in g.get(col, pd.Series(dtype=object)).dropna()})
        if values:
            parts.append(f"{label}: {', '.join(values)}")
    return "; ".join(parts)


def _short(reason: object, limit: int = 80) -> str:
    text = " ".join(str(reason).split()) if reason is not None and not pd.isna(reason) else ""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _status(r: RowRuns) -> str:
    """``ok``, ``ok (1 of 2 runs failed)``, ``failed: <reason>``, ``interrupted`` or ``not run``."""
    runs = r.runs
    if runs.empty:
        return "not run"
    ok, bad = runs[runs["status"] == "ok"], runs[runs["status"] != "ok"]
    if not ok.empty:
        return "ok" if bad.empty else f"ok ({len(bad)} of {len(runs)} runs {'/'.join(sorted(set(bad['status'])))})"
    last = runs.sort_values("_order").iloc[-1]
    reason = _short(last.get("reason"))
    return f"{last['status']}: {reason}" if reason and last["status"] != "interrupted" else str(last["status"])


def _ms(v: float | None) -> str:
    return fmt_num(1000 * v) if v is not None else DASH


def row_values(r: RowRuns) -> dict[str, Any]:
    """Means over the ok runs of a row, of every value the report shows."""
    ok = r.ok
    out: dict[str, Any] = {"runs": len(ok)}
    for col in ("map50_voc07", "map50_area", "test_s_median", "test_s_noprop_median", "train_s", "map50_voc07_unshared",
                "map50_voc07_svd", "map50_voc07_svm", "test_s_median_svd", "head_s", "head_s_svd"):
        mean, std, n = mean_std(ok[col]) if col in ok else (None, None, 0)
        out[col], out[col + "_std"], out[col + "_n"] = mean, std, n
    stages: dict[str, list[float]] = {}
    for st in ok.get("train_stages", []):
        for name, v in (st or {}).items():
            stages.setdefault(name, []).append(v)
    out["train_stages"] = {k: sum(v) / len(v) for k, v in stages.items()}
    return out


def _our_table(name: str, t: PresetTable) -> Table:
    values = [row_values(r) for r in t.rows]
    has = {col: any(v[col] is not None for v in values)
           for col in ("map50_voc07_unshared", "map50_voc07_svd", "map50_voc07_svm", "head_s_svd",
                       "test_s_noprop_median")}
    has["train_stages"] = any(v["train_stages"] for v in values)
    rcnn = [v for r, v in zip(t.rows, values) if r.detector == "rcnn" and v["test_s_median"]]
    rcnn_test = rcnn[0]["test_s_median"] if rcnn else None
    rows, data = [], []
    for r, v in zip(t.rows, values):
        shown: dict[str, str] = {"Row": r.label + (" (matched by tag)" if r.by_tag else ""),
                                 "Detector": r.detector, "Status": _status(r), "Runs": str(v["runs"])}
        ci = interval(r.ok["map50_voc07"].dropna()) if "map50_voc07" in r.ok else None
        shown["VOC07 mAP50 (%), mean ± 95 % CI"] = ci.text(100) if ci is not None else DASH
        shown["area mAP50 (%)"] = fmt_pm(v["map50_area"], v["map50_area_std"], v["map50_area_n"])
        if has["map50_voc07_unshared"]:
            shown["unshared, step 2: VOC07 mAP50 (%)"] = fmt_pm(
                v["map50_voc07_unshared"], v["map50_voc07_unshared_std"], v["map50_voc07_unshared_n"])
        if has["map50_voc07_svm"]:
            shown["SVMs on its fc7: VOC07 mAP50 (%)"] = fmt_pm(v["map50_voc07_svm"], v["map50_voc07_svm_std"],
                                                             v["map50_voc07_svm_n"])
        shown["test (ms/img)"] = _ms(v["test_s_median"])
        if has["test_s_noprop_median"]:
            shown["test without proposals (ms/img)"] = _ms(v["test_s_noprop_median"])
        if has["map50_voc07_svd"] or has["head_s_svd"]:
            shown["SVD: VOC07 mAP50 (%)"] = fmt_pm(v["map50_voc07_svd"], v["map50_voc07_svd_std"],
                                                   v["map50_voc07_svd_n"])
            shown["SVD: test (ms/img)"] = _ms(v["test_s_median_svd"])
            shown["head (ms/img): without → with SVD"] = (
                f"{_ms(v['head_s'])} → {_ms(v['head_s_svd'])}" if v["head_s_svd"] is not None else DASH)
        speedup = speedup_svd = None
        if rcnn_test is not None and r.detector != "rcnn":
            speedup = rcnn_test / v["test_s_median"] if v["test_s_median"] else None
            speedup_svd = rcnn_test / v["test_s_median_svd"] if v["test_s_median_svd"] else None
            shown["test speed-up over R-CNN"] = fmt_ratio(speedup)
            if has["map50_voc07_svd"]:
                shown["with SVD"] = fmt_ratio(speedup_svd)
        shown["train (s)"] = fmt_num(v["train_s"])
        if has["train_stages"]:
            shown["train stages (s)"] = " · ".join(f"{k} {fmt_num(s)}" for k, s in v["train_stages"].items()) \
                or DASH
        rows.append(shown)
        data.append({"preset": t.preset_id, "scale": t.scale, "row": r.label, "detector": r.detector,
                     "status": _status(r), "runs": v["runs"], "matched_by_tag": r.by_tag,
                     "map50_voc07_mean": v["map50_voc07"], "map50_voc07_std": v["map50_voc07_std"],
                     "map50_voc07_ci_low": ci.low if ci is not None and ci.known else None,
                     "map50_voc07_ci_high": ci.high if ci is not None and ci.known else None,
                     "map50_area_mean": v["map50_area"], "test_s_median_mean": v["test_s_median"],
                     "test_s_noprop_median_mean": v["test_s_noprop_median"],
                     "train_s_mean": v["train_s"], "map50_voc07_unshared_mean": v["map50_voc07_unshared"],
                     "map50_voc07_svd_mean": v["map50_voc07_svd"], "map50_voc07_svm_mean": v["map50_voc07_svm"],
                     "test_s_median_svd_mean": v["test_s_median_svd"],
                     "head_s_mean": v["head_s"], "head_s_svd_mean": v["head_s_svd"],
                     "test_speedup_over_rcnn": speedup, "test_speedup_over_rcnn_svd": speedup_svd,
                     **{f"train_stage_{k}_s": s for k, s in v["train_stages"].items()}})
    columns = list(dict.fromkeys(k for row in rows for k in row))
    caption = ("VOC07 mAP50: mean over the ok runs (seeds) of each row ± the half-width of its 95 % confidence "
               "interval (Student's t; n = runs); other columns: mean ± one standard deviation. "
               "Status: ok; failed or interrupted (no ok run; the last run's reason); not run. A run counts for "
               "every row whose config it matches, seeds aside, whichever preset ran it.")
    if rcnn_test is not None:
        caption += " Speed-ups: the R-CNN row's median test time over this row's (the paper's: Published, below)."
    return Table(name, f"Ours ({t.scale} scale)", display_frame(rows, columns), pd.DataFrame(data), caption=caption)


def _published_table(name: str, paper: str, table: str, published: pd.DataFrame) -> Table | None:
    rows = published[(published["paper"] == paper) & (published["table"] == table)]
    if rows.empty:
        return None
    cols = ["method", "setting", "backbone", "train_data", "test_data", "metric", "value", "unit"]
    cols = [c for c in cols if c in rows.columns]
    shown = rows[cols].rename(columns=str.capitalize)
    return Table(f"{name}_published", f"Published: {paper}, {table}",
                 display_frame(shown.to_dict("records"), list(shown.columns)), rows[cols].reset_index(drop=True))


def reproductions(rs: RecordSet, published: pd.DataFrame) -> Section:
    sec = Section("Reproductions", "reproductions",
                  intro="The papers' tables as presets (`harness reproduce PRESET`): our table beside the paper's. "
                        "A row is a config: a run shows under every preset row it matches (seeds aside).")
    tables = preset_tables(rs.latest)
    if not tables:
        sec.add(Note("No preset runs yet: `harness reproduce --list` shows the papers' tables as presets."))
        return sec
    names: dict[str, int] = {}
    for t in tables:
        p = t.preset
        paper, table, title, note = (p.paper, p.table, p.title, p.note) if p else ("", "", t.preset_id, "")
        n = names[t.preset_id] = names.get(t.preset_id, 0) + 1
        name = f"reproduce_{t.preset_id}" + (f"_{n}" if n > 1 else "")
        extra = ", ".join(f"{k}={v}" for k, v in t.extra.items())
        sec.add(Note(f"{t.preset_id}: {paper} {table}: {title} ({t.scale} scale"
                     + (f"; for every run: {extra}" if extra else "") + ")"))
        sec.add(_our_table(name, t))
        if p is not None and p.shows_recall:
            sec.add(recall_table(name, t))
        if n == 1:
            sec.add(_published_table(name, paper, table, published))
        runs = t.runs
        setting = _settings(runs[runs["status"] == "ok"]) if not runs.empty else ""
        sec.add(Note(f"Our setting: {setting or 'no ok run yet'}. The papers: VOC data, ImageNet-initialised "
                     f"backbones, GPUs of 2014-2015 (see each row's backbone).{' ' + note if note else ''}"))
    return sec
