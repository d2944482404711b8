"""Summary, Accuracy, Storage and Provenance sections, and the grouping helpers.

A *group* is the set of ok runs sharing detector, backbone, dataset and device
name; numbers of a group are means over its runs (seeds) unless said otherwise.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import pandas as pd

from . import plots, recall_iou
from .blocks import (
    DASH,
    Note,
    Section,
    Table,
    display_frame,
    fmt_bytes,
    fmt_int,
    fmt_num,
    fmt_pct,
    fmt_pm,
    fmt_text,
    slug,
)
from .published import methods_for
from .records import (
    KNOWN_VERSIONS,
    RecordSet,
    detector_label,
    detector_order,
    num,
    num_list,
)

GROUP_KEYS = ["detector", "backbone", "dataset", "device_name"]
_MISSING = "(unset)"


# --------------------------------------------------------------------------- #
# grouping helpers
# --------------------------------------------------------------------------- #
def iter_groups(df: pd.DataFrame, keys: list[str] = GROUP_KEYS) -> list[tuple[tuple, pd.DataFrame]]:
    if df.empty:
        return []
    filled = df.copy()
    for k in keys:
        filled[k] = filled[k].fillna(_MISSING).astype(str)
    groups = list(filled.groupby(keys, sort=False, dropna=False))
    groups = [(k if isinstance(k, tuple) else (k,), g) for k, g in groups]
    return sorted(groups, key=lambda kg: (detector_order(kg[0][0]), kg[0][1:]))


def group_name(key: tuple) -> str:
    """``"Faster R-CNN · tiny · synthetic · AMD EPYC 7B13"`` for a group key."""
    return " · ".join([detector_label(key[0]), *[str(x) for x in key[1:]]])


def mean_std(values: Iterable[Any]) -> tuple[float | None, float | None, int]:
    xs = [float(v) for v in values if num(v) is not None]
    if not xs:
        return None, None, 0
    m = sum(xs) / len(xs)
    s = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else None
    return m, s, len(xs)


def by_seed(g: pd.DataFrame) -> pd.DataFrame:
    """The runs by seed, then by line."""
    return g.sort_values(["seed", "_order"], na_position="last")


def representative(g: pd.DataFrame) -> pd.Series:
    """The run with the lowest seed (then the earliest line): used for curves."""
    return by_seed(g).iloc[0]


def seeds_text(g: pd.DataFrame) -> str:
    seeds = sorted({int(s) for s in g["seed"] if num(s) is not None})
    return ", ".join(str(s) for s in seeds) if seeds else DASH


def primary_metric(df: pd.DataFrame) -> tuple[str, str]:
    """The accuracy metric most runs report: (column, axis label)."""
    for col, label in (("map50_voc07", "VOC07 mAP50 (%)"), ("map50_area", "area mAP50 (%)"),
                       ("coco_ap", "COCO AP@[.5:.95] (%)")):
        if col in df and df[col].notna().any():
            return col, label
    return "map50_voc07", "VOC07 mAP50 (%)"


def status_counts(rs: RecordSet) -> str:
    """Runs per status, each run counted once by its last record (a resumed run is one run)."""
    latest = rs.latest
    counts = latest["status"].value_counts()
    parts = [f"{counts[s]} {s}" for s in ["ok", "failed", "interrupted"] if s in counts]
    parts += [f"{n} {s}" for s, n in counts.items() if s not in ("ok", "failed", "interrupted")]
    text = f"{len(latest)} run(s): " + ", ".join(parts)
    superseded = len(rs.runs) - len(latest)
    if superseded:
        text += (f" ({len(rs.runs)} records: {superseded} superseded by a later record of the "
                 "same run id, e.g. a resumed run; the last record of a run counts)")
    return text


# --------------------------------------------------------------------------- #
# Summary
# --------------------------------------------------------------------------- #
_SUMMARY_METRICS = [("map50_voc07", "VOC07 mAP50 (%)"), ("map50_area", "area mAP50 (%)"),
                    ("coco_ap", "COCO AP (%)")]


def _split_preset_runs(ok: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(runs made without a preset, runs of ``harness reproduce`` presets)."""
    is_preset = ok["preset"].notna()
    return ok[~is_preset], ok[is_preset]


def _preset_note(presets: pd.DataFrame, *, default_left: bool) -> str:
    names = ", ".join(sorted({str(p) for p in presets["preset"]}))
    text = (f"{len(presets)} preset run(s) ({names}) are left out of this table: presets run at "
            "their own, reduced scale and vary settings row by row, so they are shown under "
            "Reproductions and Ablations instead.")
    if not default_left:
        text += " Every successful run is a preset run: nothing else to summarise."
    return text


def summary(rs: RecordSet) -> Section:
    sec = Section("Summary", "summary",
                  "One row per detector × backbone × dataset (and device, init, profile) over "
                  "the runs that finished (status ok) outside presets. Accuracy is the mean over "
                  "seeds, ± one standard deviation where there is more than one seed.")
    sec.add(Note(status_counts(rs) + ". Failed and interrupted runs are listed under Provenance."))
    if rs.ok.empty:
        sec.add(Note("No run finished successfully yet: nothing to summarise.", "warning"))
        return sec
    ok, presets = _split_preset_runs(rs.ok)
    if not presets.empty:
        sec.add(Note(_preset_note(presets, default_left=not ok.empty)))
    if ok.empty:
        return sec
    keys = GROUP_KEYS + ["init_kind", "profile"]
    rows, data, points = [], [], []
    y_col, y_label = primary_metric(ok)
    for key, g in iter_groups(ok, keys):
        det, backbone, dataset, device, init, profile = key
        row = {"Detector": detector_label(det), "Backbone": backbone, "Dataset": dataset,
               "Device": device, "Init": init, "Profile": profile,
               "Runs (seeds)": f"{len(g)} ({seeds_text(g)})"}
        rec = dict(detector=det, backbone=backbone, dataset=dataset, device=device, init=init,
                   profile=profile, runs=len(g), seeds=seeds_text(g))
        for col, label in _SUMMARY_METRICS:
            m, s, n = mean_std(g[col])
            row[label] = fmt_pm(m, s, n)
            rec[f"{col}_mean"], rec[f"{col}_std"] = m, s
        train, _, _ = mean_std(g["train_s"])
        test, _, _ = mean_std(g["test_s_median"])
        disk, _, _ = mean_std(g["disk_bytes"])
        row.update({"Train time (s)": fmt_num(train), "Test (s/img, median)": fmt_num(test),
                    "fps": fmt_num(1 / test) if test else DASH, "Disk": fmt_bytes(disk)})
        rec.update(train_s=train, test_s_per_img_median=test, fps=(1 / test) if test else None,
                   disk_bytes=disk)
        rows.append(row)
        data.append(rec)
        y, _, _ = mean_std(g[y_col])
        if test and y is not None:
            points.append(plots.Point(f"{backbone} · {dataset}", det, test, 100 * y))
    sec.add(Table("summary", "Detectors side by side", display_frame(rows, list(rows[0])),
                  pd.DataFrame(data)))
    sec.add(plots.map_vs_speed(points, y_label))
    return sec


# --------------------------------------------------------------------------- #
# Accuracy
# --------------------------------------------------------------------------- #
_ACC_METRICS = [("map50_voc07", "VOC07 mAP50"), ("map50_area", "area mAP50"),
                ("coco_ap", "COCO AP"), ("coco_ap50", "AP50"), ("coco_ap75", "AP75"),
                ("coco_ap_small", "AP small"), ("coco_ap_medium", "AP medium"),
                ("coco_ap_large", "AP large")]


def _per_class_value(entry: Any) -> float | None:
    if not isinstance(entry, dict):
        return None
    v = num(entry.get("ap50_voc07"))
    return v if v is not None else num(entry.get("ap50_area"))


def accuracy(rs: RecordSet) -> Section:
    sec = Section("Accuracy", "accuracy",
                  "All AP values in %, means over seeds. Per-class AP is VOC07 AP50 "
                  "(11-point; area AP50 where a run has no VOC07 value).")
    ok = rs.ok
    if ok.empty:
        sec.add(Note("No successful run yet.", "warning"))
        return sec
    rows, data = [], []
    for key, g in iter_groups(ok):
        row = {"Run group": group_name(key), "Runs": str(len(g))}
        rec = dict(zip(GROUP_KEYS, key), runs=len(g))
        for col, label in _ACC_METRICS:
            m, s, n = mean_std(g[col])
            row[f"{label} (%)"] = fmt_pm(m, s, n)
            rec[f"{col}_mean"], rec[f"{col}_std"] = m, s
        rows.append(row)
        data.append(rec)
    sec.add(Table("accuracy_metrics", "Overall accuracy", display_frame(rows, list(rows[0])),
                  pd.DataFrame(data)))

    datasets = list(dict.fromkeys(ok["dataset"].fillna(_MISSING)))
    for i, dataset in enumerate(datasets):
        sub = ok[ok["dataset"].fillna(_MISSING) == dataset]
        _per_class_block(sec, sub, dataset, i)
    _proposal_block(sec, ok)
    return sec


def _per_class_block(sec: Section, sub: pd.DataFrame, dataset: str, i: int) -> None:
    long_rows, matrix, curves = [], {}, {}
    for key, g in iter_groups(sub):
        label = group_name(key)
        classes: dict[str, list[dict]] = {}
        for pc in g["per_class"]:
            for cls, entry in (pc or {}).items():
                classes.setdefault(str(cls), []).append(entry if isinstance(entry, dict) else {})
        for cls, entries in classes.items():
            ap, _, n = mean_std(_per_class_value(e) for e in entries)
            area, _, _ = mean_std(num(e.get("ap50_area")) for e in entries)
            gt, _, _ = mean_std(num(e.get("num_gt")) for e in entries)
            det, _, _ = mean_std(num(e.get("num_det")) for e in entries)
            long_rows.append(dict(zip(GROUP_KEYS, key), group=label, cls=cls, runs=n,
                                  ap50=ap, ap50_area=area, num_gt=gt, num_det=det))
            matrix.setdefault(label, {})[cls] = None if ap is None else 100 * ap
        rep = representative(g)
        for cls, pr in (rep["pr_curves"] or {}).items():
            r, p = num_list(_get(pr, "recall")), num_list(_get(pr, "precision"))
            if r and p and len(r) == len(p):
                curves.setdefault(str(cls), []).append(
                    plots.Curve(f"{label} (seed {fmt_int(rep['seed'])})", key[0], r, p,
                                _style_index(sub, key)))
    if not long_rows and not curves:
        sec.add(Note(f"Dataset {dataset}: no per-class results in the records."))
        return
    name = f"accuracy_per_class_{i + 1}_{slug(dataset)[:40]}"
    if long_rows:
        long = pd.DataFrame(long_rows)
        wide = long.pivot_table(index="group", columns="cls", values="ap50", aggfunc="first",
                                sort=False)
        display = wide.map(fmt_pct).reset_index().rename(columns={"group": "Run group"})
        display.columns = [str(c) for c in display.columns]
        sec.add(Table(name, f"Per-class AP50 (%) on {dataset}", display.fillna(DASH),
                      long.rename(columns={"cls": "class"}),
                      "CSV has one row per run group and class, with GT and detection counts."))
        mat = pd.DataFrame(matrix).T
        sec.add(plots.heatmap(mat, name + "_heatmap", f"Per-class AP50 on {dataset}",
                              "AP50 (%)"))
    sec.add(plots.pr_curves(curves, f"accuracy_pr_{i + 1}",
                            f"Precision-recall per class on {dataset} (one run per group)"))


def _style_index(df: pd.DataFrame, key: tuple) -> int:
    same_det = [k for k, _ in iter_groups(df) if k[0] == key[0]]
    return same_det.index(key) if key in same_det else 0


def _get(d: Any, k: str) -> Any:
    return d.get(k) if isinstance(d, dict) else None


def widest_recall(g: pd.DataFrame) -> dict[str, tuple[pd.Series, dict]]:
    """Per proposal source, the group's run whose recall was measured on the most proposals per image
    (then the lowest seed): a run capped at 300 proposals records recall "at 2000" with its 300, so the
    curves and tables for 1000 / 2000 come from the run that had them."""
    best: dict[str, tuple[pd.Series, dict, float]] = {}
    for _, run in by_seed(g).iterrows():
        for method, pr in (run["proposal_recall"] if isinstance(run["proposal_recall"], dict) else {}).items():
            width = num(_get(pr, "mean_proposals")) or 0.0
            if str(method) not in best or width > best[str(method)][2]:
                best[str(method)] = (run, pr, width)
    return {m: (run, pr) for m, (run, pr, _) in best.items()}


def _proposal_block(sec: Section, ok: pd.DataFrame) -> None:
    series, rows, iou_series = [], [], []
    for key, g in iter_groups(ok):
        for method, (rep, pr) in widest_recall(g).items():
            ns = num_list(_get(pr, "num_proposals"))
            if not ns:
                continue
            recalls = {}
            for k, v in (pr.items() if isinstance(pr, dict) else []):
                vals = num_list(v)
                if str(k).startswith("recall@") and vals and len(vals) == len(ns):
                    recalls[str(k)[len("recall@"):]] = vals
            if not recalls:
                continue
            series.append(plots.RecallSeries(group_name(key), key[0], str(method), ns, recalls))
            iou_series.append(recall_iou.series_of(group_name(key), key[0], str(method), pr))
            for j, n in enumerate(ns):
                rows.append({"group": group_name(key), "run_id": rep["run_id"],
                             "method": str(method), "proposals_per_img": num(_get(pr, "mean_proposals")),
                             "num_proposals": n,
                             **{f"recall@{iou}": r[j] for iou, r in recalls.items()}})
    if not series:
        sec.add(Note("Proposal recall: no run recorded proposal recall yet "
                     "(metrics.proposal_recall)."))
        return
    sec.add(plots.proposal_recall(series))
    iou_series = [s for s in iou_series if s is not None]
    sec.add(recall_iou.figure(iou_series))
    sec.add(recall_iou.table(iou_series))
    data = pd.DataFrame(rows)
    display = data.copy()
    for c in display.columns:
        if c.startswith("recall@"):
            display[c] = display[c].map(fmt_pct)
    display["num_proposals"] = display["num_proposals"].map(fmt_int)
    display["proposals_per_img"] = display["proposals_per_img"].map(fmt_int)
    display = display.rename(columns={c: f"{c} (%)" for c in display.columns
                                      if c.startswith("recall@")})
    sec.add(Table("accuracy_proposal_recall", "Proposal recall vs number of proposals",
                  display.astype(str).fillna(DASH), data,
                  "One run per group and proposal source: the one with the most proposals per image "
                  "(proposals_per_img), then the lowest seed; solid = RPN, dashed = selective search."))


# --------------------------------------------------------------------------- #
# Storage
# --------------------------------------------------------------------------- #
def storage(rs: RecordSet, published: pd.DataFrame) -> Section:
    sec = Section("Storage", "storage",
                  "Disk written by each method (feature caches and other artefacts), "
                  "measured on our data, and R-CNN's extrapolation to the paper's scale.")
    ok = rs.ok
    disk_rows = published[published["metric"] == "disk"]
    rows, data, bars = [], [], []
    for key, g in iter_groups(ok):
        det = key[0]
        measured, _, _ = mean_std(g["disk_bytes"])
        extra, _, _ = mean_std(g["disk_extrapolated_bytes"])
        to = "; ".join(dict.fromkeys(t for t in g["disk_extrapolated_to"]
                                     if isinstance(t, str) and t))
        items: dict[str, list[float]] = {}
        for it in g["disk_items"]:
            for k, v in (it or {}).items():
                if num(v) is not None:
                    items.setdefault(str(k), []).append(num(v))
        items_mean = {k: sum(v) / len(v) for k, v in items.items()}
        paper = disk_rows[disk_rows["method"].isin(methods_for(det))]
        paper_txt = "; ".join(
            f"{r['value']} {r['unit']}".strip() + f" ({r['paper']}, {r['table']}, {r['backbone']}"
            f" on {r['train_data']})" for _, r in paper.iterrows()) or DASH
        rows.append({"Run group": group_name(key), "Measured": fmt_bytes(measured),
                     "Items": ", ".join(f"{k}: {fmt_bytes(v)}" for k, v in items_mean.items())
                     or DASH,
                     "Extrapolated": fmt_bytes(extra), "Extrapolated to": to or DASH,
                     "Paper": paper_txt})
        data.append(dict(zip(GROUP_KEYS, key), disk_bytes=measured,
                         **{f"item_{k}_bytes": v for k, v in items_mean.items()},
                         extrapolated_bytes=extra, extrapolated_to=to, paper=paper_txt))
        bars.append(plots.DiskBar(group_name(key), det, measured, extra))
    if not rows:
        sec.add(Note("No successful run yet.", "warning"))
        return sec
    sec.add(plots.disk_bars(bars))
    sec.add(Table("storage", "Disk per method", display_frame(rows, list(rows[0])),
                  pd.DataFrame(data), "Means over seeds; binary units (1 GiB = 2^30 bytes)."))
    return sec


# --------------------------------------------------------------------------- #
# Provenance
# --------------------------------------------------------------------------- #
def provenance(rs: RecordSet) -> Section:
    sec = Section("Provenance", "provenance",
                  "Every record read, whatever its status: code version, library versions and "
                  "device of each run. Nothing is dropped.")
    latest = rs.latest.sort_values("_order")
    bad = latest[latest["status"] != "ok"]
    if not bad.empty:
        cols = ["run_id", "status", "reason", "detector", "backbone", "dataset", "seed",
                "started", "finished", "source"]
        sec.add(Table("provenance_not_ok", "Failed and interrupted runs",
                      _text_frame(bad[cols], {"seed": fmt_int}), bad[cols].reset_index(drop=True),
                      "By each run's last record: a run resumed to ok is not listed here."))
    else:
        sec.add(Note("No failed or interrupted run."))
    sec.add(_all_runs_table(rs))
    if rs.skipped:
        sk = pd.DataFrame([{"file": s.file, "line": s.line, "error": s.error}
                           for s in rs.skipped])
        sec.add(Table("provenance_skipped_lines", "Skipped lines", sk.astype(str), sk,
                      "Lines of the records files (runs, bench, reproduce) that could not be "
                      "read as a record."))
    return sec


def _all_runs_table(rs: RecordSet) -> Table:
    runs = rs.runs.sort_values("_order")
    version_keys = list(KNOWN_VERSIONS)
    for v in runs["versions"]:
        version_keys += [k for k in (v or {}) if k not in version_keys]
    table = runs[["run_id", "status", "detector", "backbone", "dataset", "seed", "init",
                  "profile", "preset", "git_sha", "device_type", "device_name",
                  "device_threads", "started", "finished", "source"]].copy()
    table.insert(2, "counted", ~runs.index.isin(rs.superseded.index))
    for k in version_keys:
        table[k] = [(v or {}).get(k) for v in runs["versions"]]
    display = _text_frame(table, {"seed": fmt_int, "device_threads": fmt_int,
                                  "git_sha": lambda s: fmt_text(s)[:12],
                                  "counted": lambda c: "yes" if c else "superseded"})
    return Table("provenance_runs", "All runs", display, table.reset_index(drop=True),
                 "git SHA shortened to 12 characters here; in full in the CSV. counted: "
                 "'superseded' marks a record followed by a later one of the same run id "
                 "(an interrupted run that was resumed); the last record counts.")


def _text_frame(df: pd.DataFrame,
                fmts: dict[str, Callable[[Any], str]] | None = None) -> pd.DataFrame:
    fmts = fmts or {}
    out = pd.DataFrame(index=range(len(df)))
    for c in df.columns:
        out[c] = [fmts.get(c, fmt_text)(v) for v in df[c]]
    return out
