"""Reproductions: each preset run (``harness reproduce``) as our table beside the paper's.

Rows of our table are the preset's rows (``preset_row`` in the records), averaged
over seeds; the published rows of the same paper and table follow, and the
differences of setting (device, backbone, data, init, scale) are spelled out.
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


def _settings(g: pd.DataFrame) -> str:
    parts = []
    for col, label in (("device_name", "device"), ("backbone", "backbone"), ("dataset", "data"),
                       ("init_kind", "init"), ("scale", "scale")):
        values = sorted({str(v) for v in g.get(col, pd.Series(dtype=object)).dropna()})
        if values:
            parts.append(f"{label}: {', '.join(values)}")
    return "; ".join(parts)


def _our_table(preset_id: str, g: pd.DataFrame) -> Table:
    rows, data = [], []
    for label, r in g.groupby("preset_row", sort=False, dropna=False):
        m07 = mean_std(r["map50_voc07"])
        area = mean_std(r["map50_area"])
        test = mean_std(r["test_s_median"])
        train = mean_std(r["train_s"])
        rows.append({
            "Row": str(label), "Detector": str(r["detector"].iloc[0]), "Runs": str(len(r)),
            "VOC07 mAP50 (%)": fmt_pm(*m07), "area mAP50 (%)": fmt_pm(*area),
            "test (ms/img)": fmt_num(1000 * test[0]) if test[0] is not None else DASH,
            "train (s)": fmt_num(train[0]),
        })
        data.append({"preset": preset_id, "row": label, "detector": r["detector"].iloc[0], "runs": len(r),
                     "map50_voc07_mean": m07[0], "map50_voc07_std": m07[1], "map50_area_mean": area[0],
                     "test_s_median_mean": test[0], "train_s_mean": train[0]})
    cols = list(rows[0]) if rows else ["Row"]
    return Table(f"reproduce_{preset_id}", "Ours", display_frame(rows, cols), pd.DataFrame(data),
                 caption="Mean over seeds (± one standard deviation when there is more than one).")


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
    df = rs.ok
    if "preset" not in df.columns or df["preset"].dropna().empty:
        sec.add(Note("No preset runs yet: `harness reproduce --list` shows the papers' tables as presets."))
        return sec
    for preset_id, g in df[df["preset"].notna()].groupby("preset", sort=True):
        paper, table, title, note = _preset_meta(str(preset_id))
        sec.add(Note(f"{preset_id}: {paper} {table}: {title}".strip()))
        sec.add(_our_table(str(preset_id), g))
        sec.add(_published_table(str(preset_id), paper, table, published))
        sec.add(Note(f"Our setting: {_settings(g)}. The papers: VOC data, ImageNet-initialised backbones, "
                     f"GPUs of 2014-2015 (see each row's backbone).{' ' + note if note else ''}"))
    return sec
