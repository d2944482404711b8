"""What the benchmark blocks of the report share: labels, the setting of a bench record (machine,
backbone, init), the latest record per setting, and one table-or-note helper."""
from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import Any

import pandas as pd

from .blocks import (
    Note,
    Section,
    Table,
    display_frame,
    fmt_int,
)
from .records import (
    SideRecord,
    get,
    init_kind,
    num,
    text,
)

KIND_LABELS = {
    "faster_vs_torchvision": "Faster R-CNN vs torchvision (harness bench)",
    "rcnn_cnn_stage": "R-CNN CNN stage (harness bench-rcnn)",
    "selective_search_proposals": "Selective search (harness bench-proposals)",
    "scaling": "Scaling (harness bench-scaling)",
}
FIGURE_LABELS = {
    "inference_throughput_ours_over_torchvision": "inference throughput, ours / torchvision",
    "training_throughput_ours_over_torchvision": "training throughput, ours / torchvision",
    "inference_throughput_ours_roi_align_over_torchvision":
        "inference throughput, ours with RoIAlign / torchvision",
    "training_throughput_ours_roi_align_over_torchvision":
        "training throughput, ours with RoIAlign / torchvision",
    "eval_time_over_backbone_time": "test time / backbone-only time",
    "fraction": "CNN-stage throughput (warp + CNN) / raw backbone throughput",
    "parallel_speedup": "images/s with all workers / with 1 worker",
    "hit_vs_recompute": "proposal-cache hit speed / searching again",
    "disk_ratio": "R-CNN feature-cache growth with the training images",
    "peak_rss_ratio": "R-CNN peak RSS growth with the training images",
}
SPEED_NAMES = {"ours_roi_align": "ours with RoIAlign", "backbone_only": "backbone alone"}
NO_NETWORK = "selective_search_proposals"


# --------------------------------------------------------------------------- #
# what a record was measured on
# --------------------------------------------------------------------------- #
def bench_kind(rec: dict[str, Any]) -> str:
    return text(rec.get("kind")) or text(rec.get("bench")) or "unknown"


def machine(rec: dict[str, Any]) -> str:
    """``"cpu · AMD EPYC · 2 threads"``: device type, name and threads of a record."""
    dev = rec.get("device")
    if not isinstance(dev, dict):
        return "device not recorded"
    threads = num(dev.get("threads"))
    parts = [text(dev.get("type")) or "unknown type",
             text(dev.get("name")) or text(dev.get("cpu")) or "unnamed device",
             f"{fmt_int(threads)} threads" if threads is not None else ""]
    return " · ".join(p for p in parts if p)


def backbone(rec: dict[str, Any]) -> str:
    if bench_kind(rec) == NO_NETWORK:
        return "n/a (no network)"
    return (text(rec.get("backbone")) or text(get(rec, "config", "model", "backbone"))
            or "not recorded")


def init(rec: dict[str, Any]) -> str:
    """``random`` or ``weights`` (a weights file), from ``init`` or the record's model config."""
    if bench_kind(rec) == NO_NETWORK:
        return "n/a"
    if rec.get("init") is not None:
        return init_kind(rec["init"]) or "not recorded"
    model = get(rec, "config", "model")
    if isinstance(model, dict) and "weights" in model:
        return "weights" if model["weights"] else "random"
    return "not recorded"


def setting(rec: dict[str, Any]) -> tuple[str, str, str, str]:
    return bench_kind(rec), machine(rec), backbone(rec), init(rec)


def latest_by(records: list[SideRecord],
              key: Callable[[dict[str, Any]], Hashable]) -> list[tuple[SideRecord, int]]:
    """The last record (in file order) of each key, with the number of records of that key."""
    last: dict[Hashable, SideRecord] = {}
    counts: dict[Hashable, int] = {}
    for side in records:
        k = key(side.record)
        last[k] = side
        counts[k] = counts.get(k, 0) + 1
    return [(last[k], counts[k]) for k in sorted(last, key=_sort_key)]


def _sort_key(key: Hashable) -> tuple:
    parts = key if isinstance(key, tuple) else (key,)
    kinds = list(KIND_LABELS)
    first = kinds.index(parts[0]) if parts and parts[0] in kinds else len(kinds)
    return (first, *[str(p) for p in parts])



def device_columns(rec: dict[str, Any]) -> dict[str, Any]:
    return {"device_type": text(get(rec, "device", "type")),
            "device_name": text(get(rec, "device", "name")),
            "device_threads": num(get(rec, "device", "threads"))}



def table_or_note(sec: Section, rows: list[dict], data: list[dict], empty: str, slug: str, title: str,
                   caption: str) -> None:
    """The rows as one table (display strings, raw values for the CSV), or ``empty`` as a note."""
    if not rows:
        sec.add(Note(empty))
        return
    sec.add(Table(slug, title, display_frame(rows, list(rows[0])), pd.DataFrame(data), caption))


def as_dict(x: Any) -> dict[str, Any]:
    return x if isinstance(x, dict) else {}
