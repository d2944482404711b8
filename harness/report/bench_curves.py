"""The ``bench-scaling`` curves in the report: line plots and one long table of the latest record
per setting (test time vs proposals, Faster R-CNN time vs image size, R-CNN disk vs training images)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import plots
from .bench_common import (
    as_dict,
    bench_kind,
    device_columns,
    latest_by,
    setting,
    table_or_note,
)
from .blocks import (
    Note,
    Section,
    fmt_int,
    fmt_num,
    fmt_text,
)
from .records import (
    RecordSet,
    SideRecord,
    detector_label,
    get,
    num,
    text,
)


@dataclass(frozen=True)
class CurveSpec:
    panel: str
    detector: str
    path: tuple[str, ...]  # where the list of points is in the record
    x_key: str
    x_label: str
    x_unit: str
    y_key: str
    y_label: str
    y_unit: str
    y_scale: float = 1.0
    log: bool = False  # both axes: R-CNN's times are ~100x Fast R-CNN's


_PROPOSALS_X = "proposals per image (log scale)"
_PROPOSALS_Y = "network time per test image (s, median, log scale)"
_RCNN_X = "training images"
CURVES = [
    CurveSpec("Test time vs proposals per image", "fast", ("test_time_vs_proposals", "fast"),
              "proposals", _PROPOSALS_X, "proposals/img", "s_per_img", _PROPOSALS_Y, "s/img",
              log=True),
    CurveSpec("Test time vs proposals per image", "rcnn", ("test_time_vs_proposals", "rcnn"),
              "proposals", _PROPOSALS_X, "proposals/img", "s_per_img", _PROPOSALS_Y, "s/img",
              log=True),
    CurveSpec("Faster R-CNN test time vs image size", "faster", ("faster_time_vs_image_size",),
              "min_size", "shorter image side (px)", "px", "s_per_img",
              "test time per image (s, median, RPN included)", "s/img"),
    CurveSpec("R-CNN feature cache vs training images", "rcnn", ("rcnn_disk_vs_images",),
              "train_images", _RCNN_X, "images", "feature_cache_bytes",
              "feature cache on disk (MB)", "MB", 1e-6),
    CurveSpec("R-CNN peak RSS vs training images", "rcnn", ("rcnn_disk_vs_images",),
              "train_images", _RCNN_X, "images", "peak_rss_bytes",
              "peak resident memory of the run (MiB)", "MiB", 1 / 2 ** 20),
]


def curve_points(rec: dict[str, Any], spec: CurveSpec) -> list[tuple[float, float]]:
    points = get(rec, *spec.path)
    out = []
    for p in points if isinstance(points, list) else []:
        x, y = num(get(p, spec.x_key)), num(get(p, spec.y_key))
        if x is not None and y is not None:
            out.append((x, y * spec.y_scale))
    return sorted(out)


def _panels(rec: dict[str, Any]) -> list[plots.LinePanel]:
    panels: dict[str, plots.LinePanel] = {}
    for spec in CURVES:
        pts = curve_points(rec, spec)
        if not pts:
            continue
        panel = panels.setdefault(spec.panel, plots.LinePanel(
            spec.panel, spec.x_label, spec.y_label, [], spec.log, spec.log))
        panel.lines.append(plots.Line(detector_label(spec.detector), spec.detector,
                                      [x for x, _ in pts], [y for _, y in pts]))
    return list(panels.values())


def _fmt_x(x: float) -> str:
    return fmt_int(x) if float(x).is_integer() else fmt_num(x)


def _point_rows(side: SideRecord) -> tuple[list[dict], list[dict]]:
    rec = side.record
    _, where, bb, ini = setting(rec)
    rows, data = [], []
    for spec in CURVES:
        for x, y in curve_points(rec, spec):
            rows.append({"Machine": where, "Backbone": bb, "Init": ini, "Curve": spec.panel,
                         "Detector": detector_label(spec.detector),
                         "x": f"{_fmt_x(x)} {spec.x_unit}", "y": f"{fmt_num(y)} {spec.y_unit}"})
            data.append({**device_columns(rec), "backbone": bb, "init": ini,
                         "curve": spec.panel, "detector": spec.detector, "x": x,
                         "x_unit": spec.x_unit, "y": y, "y_unit": spec.y_unit,
                         "finished": text(rec.get("finished")), "source": side.source})
    return rows, data


def _scaling_caption(side: SideRecord) -> str:
    rec = side.record
    _, where, bb, ini = setting(rec)
    return (f"Measured on {where}; backbone {bb}, {ini} init; "
            f"{fmt_int(rec.get('images_per_point'))} test image(s) × "
            f"{fmt_int(rec.get('repeats'))} pass(es) per time point; "
            f"finished {fmt_text(rec.get('finished'))} ({side.source}).")


def scaling_block(sec: Section, rs: RecordSet) -> None:
    scaling = [s for s in rs.bench if bench_kind(s.record) == "scaling"]
    if not scaling:
        sec.add(Note("No scaling curves yet: harness bench-scaling records them."))
        return
    rows, data = [], []
    for i, (side, _) in enumerate(latest_by(scaling, setting)):
        _, where, bb, ini = setting(side.record)
        sec.add(plots.line_panels(f"bench_scaling_{i + 1}",
                                  f"Scaling on {where} ({bb}, {ini} init)",
                                  _panels(side.record), _scaling_caption(side)))
        notes = as_dict(side.record.get("notes"))
        if notes:
            sec.add(Note("; ".join(f"{k}: {v}" for k, v in notes.items())))
        r, d = _point_rows(side)
        rows += r
        data += d
    table_or_note(sec, rows, data, f"{len(scaling)} scaling record(s), none with a curve point.",
                   "bench_scaling_points", "Scaling curves, point by point",
                   "The latest scaling record per machine, backbone and init. MB = 10^6 bytes, "
                   "MiB = 2^20 bytes.")


