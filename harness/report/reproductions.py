"""Reproductions: each preset run (``harness reproduce``) as our table beside the paper's.

Rows of our table are the preset's rows (``preset_row`` in the records), averaged
over seeds; the published rows of the same paper and table follow, and the
differences of setting (device, backbone, data, init, scale) are spelled out.

Every row of the preset is listed, with a status: ``ok`` (with how many of its
runs failed, if any), ``failed: <reason>`` or ``interrupted`` when it has runs but
none ok (the last run's status and reason), ``not run`` when it has none. A row
that failed is never shown as missing.
"""
from __future__ import annotations

import pandas as pd

from .blocks import DASH, Note, Section, Table, display_frame, fmt_num, fmt_pm
from .records import RecordSet
from .sections import mean_std


def _preset_meta(preset_id: str) -> tuple[str, str, str, str]:
    """(paper, table, title, note) of a preset, or blanks for an unknown (older/newer) id."""
    from harness.config.presets import BY_ID

    p = BY_ID.get(preset_id)
    return (p.paper, p.table, p.title, p.note) if p else ("", "", preset_id, "")


def _preset_rows(preset_id: str) -> list[tuple[str, str]]:
    """(label, detector) of every row of a known preset, in its order."""
    from harness.config.presets import BY_ID

    p = BY_ID.get(preset_id)
    return [(row.label, row.detector) for row in p.rows] if p else []


def _short(reason: object, limit: int = 80) -> str:
    text = " ".join(str(reason).split()) if reason is not None and not pd.isna(reason) else ""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _status(runs: pd.DataFrame) -> str:
    """The status of one preset row from all its runs (the last record of each run id)."""
    ok = runs[runs["status"] == "ok"]
    bad = runs[runs["status"] != "ok"]
    if not ok.empty:
        return "ok" if bad.empty else f"ok ({len(bad)} of {len(runs)} runs {'/'.join(sorted(set(bad['status'])))})"
    last = runs.iloc[-1]
    reason = _short(last.get("reason"))
    return f"{last['status']}: {reason}" if reason and last["status"] != "interrupted" else str(last["status"])


def _settings(g: pd.DataFrame) -> str:
    parts = []
    for col, label in (("device_name", "device"), ("backbone", "backbone"), ("dataset", "data"),
                       ("init_kind", "init"), ("scale", "scale")):
        values = sorted({str(v) for v in g.get(col, pd.Series(dtype=object)).dropna()})
        if values:
            parts.append(f"{label}: {', '.join(values)}")
    return "; ".join(parts)


def _our_table(preset_id: str, runs: pd.DataFrame) -> Table:
    """One line per preset row: its ok runs' figures, or why it has none."""
    rows, data = [], []
    groups = {str(label): r for label, r in runs.groupby("preset_row", sort=False, dropna=False)}
    known = _preset_rows(preset_id)
    order = [label for label, _ in known] + [label for label in groups if label not in dict(known)]
    for label in order:
        r = groups.get(label)
        detector = dict(known).get(label) if r is None else str(r["detector"].iloc[0])
        status = "not run" if r is None else _status(r)
        ok = r[r["status"] == "ok"] if r is not None else runs.iloc[0:0]
        m07 = mean_std(ok["map50_voc07"])
        area = mean_std(ok["map50_area"])
        test = mean_std(ok["test_s_median"])
        train = mean_std(ok["train_s"])
        rows.append({
            "Row": label, "Detector": str(detector), "Status": status, "Runs": str(len(ok)),
            "VOC07 mAP50 (%)": fmt_pm(*m07), "area mAP50 (%)": fmt_pm(*area),
            "test (ms/img)": fmt_num(1000 * test[0]) if test[0] is not None else DASH,
            "train (s)": fmt_num(train[0]),
        })
        data.append({"preset": preset_id, "row": label, "detector": detector, "status": status, "runs": len(ok),
                     "map50_voc07_mean": m07[0], "map50_voc07_std": m07[1], "map50_area_mean": area[0],
                     "test_s_median_mean": test[0], "train_s_mean": train[0]})
    cols = list(rows[0]) if rows else ["Row"]
    return Table(f"reproduce_{preset_id}", "Ours", display_frame(rows, cols), pd.DataFrame(data),
                 caption="Mean over the ok runs' seeds (± one standard deviation when there is more than one). "
                         "Status: ok; failed or interrupted (no ok run; the last run's reason); not run.")


def _published_table(preset_id: str, paper: str, table: str, published: pd.DataFrame) -> Table | None:
    rows = published[(published["paper"] == paper) & (published["table"] == table)]
    if rows.empty:
        return None
    cols = ["method", "setting", "backbone", "train_data", "test_data", "metric", "value", "unit"]
    cols = [c for c in cols if c in rows.columns]
    shown = rows[cols].rename(columns=str.capitalize)
    return Table(f"reproduce_{preset_id}_published", f"Published: {paper}, {table}",
                 display_frame(shown.to_dict("records"), list(shown.columns)), rows[cols].reset_index(drop=True))


def reproductions(rs: RecordSet, published: pd.DataFrame) -> Section:
    sec = Section("Reproductions", "reproductions",
                  intro="Runs made with `harness reproduce PRESET`: our table beside the paper's.")
    df = rs.latest  # every status: a failed or interrupted row is listed as such
    if "preset" not in df.columns or df["preset"].dropna().empty:
        sec.add(Note("No preset runs yet: `harness reproduce --list` shows the papers' tables as presets."))
        return sec
    for preset_id, everything in df[df["preset"].notna()].groupby("preset", sort=True):
        g = everything[everything["status"] == "ok"]
        paper, table, title, note = _preset_meta(str(preset_id))
        sec.add(Note(f"{preset_id}: {paper} {table}: {title}".strip()))
        sec.add(_our_table(str(preset_id), everything))
        sec.add(_published_table(str(preset_id), paper, table, published))
        sec.add(Note(f"Our setting: {_settings(g if not g.empty else everything)}. The papers: VOC data, ImageNet-initialised backbones, "
                     f"GPUs of 2014-2015 (see each row's backbone).{' ' + note if note else ''}"))
    return sec
