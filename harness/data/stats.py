"""Annotation statistics of a dataset split, for ``harness datasets`` and run records.

Everything is computed from ``dataset.annotation(i)`` (boxes in the image-on-
disk frame, before any Resize), so no image file is decoded. Area buckets
follow COCO: small ``area < 32^2``, medium ``32^2 <= area <= 96^2``, large
``area > 96^2`` (areas of boxes in original pixels).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from harness.data.base import DetectionDataset

SMALL_AREA = 32.0**2
LARGE_AREA = 96.0**2


def _summary(values: np.ndarray) -> dict[str, float | None]:
    """``{"min", "median", "max"}`` of a 1-D array (``None`` when empty)."""
    if values.size == 0:
        return {"min": None, "median": None, "max": None}
    return {"min": float(values.min()), "median": float(np.median(values)), "max": float(values.max())}


def dataset_stats(dataset: DetectionDataset) -> dict[str, Any]:
    """Counts and size statistics of one split.

    Returns a JSON-serialisable dict::

        name, [layout, split_rule: how the files were found and split, when the source says],
        images, boxes, empty_images, difficult, crowd,
        boxes_per_image: {mean, min, max},
        classes: {class_name: {boxes, difficult, crowd}}   # every class, label order
        box_width / box_height / box_area: {min, median, max}
        area_buckets: {small, medium, large}
        image_height / image_width: {min, max}
    """
    n = len(dataset)
    boxes, labels, difficult, crowd = [], [], [], []
    per_image = np.zeros(n, dtype=np.int64)
    sizes = np.zeros((n, 2), dtype=np.int64)
    for i in range(n):
        target = dataset.annotation(i)
        boxes.append(target["boxes"].numpy().reshape(-1, 4))
        labels.append(target["labels"].numpy())
        difficult.append(target["difficult"].numpy())
        crowd.append(target["iscrowd"].numpy())
        per_image[i] = len(labels[-1])
        sizes[i] = target["orig_size"].numpy()
    all_boxes = np.concatenate(boxes) if boxes else np.zeros((0, 4), np.float32)
    all_labels = np.concatenate(labels) if labels else np.zeros(0, np.int64)
    all_difficult = np.concatenate(difficult) if difficult else np.zeros(0, bool)
    all_crowd = np.concatenate(crowd) if crowd else np.zeros(0, bool)

    widths = (all_boxes[:, 2] - all_boxes[:, 0]).astype(np.float64)
    heights = (all_boxes[:, 3] - all_boxes[:, 1]).astype(np.float64)
    areas = widths * heights
    classes = {}
    for label, name in enumerate(dataset.class_names):
        if label == 0:
            continue
        of_class = all_labels == label
        classes[name] = {
            "boxes": int(of_class.sum()),
            "difficult": int((of_class & all_difficult).sum()),
            "crowd": int((of_class & all_crowd).sum()),
        }
    layout = {key: str(getattr(dataset, key)) for key in ("layout", "split_rule") if getattr(dataset, key, None)}
    return {
        "name": getattr(dataset, "name", type(dataset).__name__),
        **layout,
        "images": n,
        "boxes": int(all_labels.size),
        "empty_images": int((per_image == 0).sum()),
        "difficult": int(all_difficult.sum()),
        "crowd": int(all_crowd.sum()),
        "boxes_per_image": {
            "mean": float(per_image.mean()) if n else None,
            "min": int(per_image.min()) if n else None,
            "max": int(per_image.max()) if n else None,
        },
        "classes": classes,
        "box_width": _summary(widths),
        "box_height": _summary(heights),
        "box_area": _summary(areas),
        "area_buckets": {
            "small": int((areas < SMALL_AREA).sum()),
            "medium": int(((areas >= SMALL_AREA) & (areas <= LARGE_AREA)).sum()),
            "large": int((areas > LARGE_AREA).sum()),
        },
        "image_height": {"min": int(sizes[:, 0].min()) if n else None, "max": int(sizes[:, 0].max()) if n else None},
        "image_width": {"min": int(sizes[:, 1].min()) if n else None, "max": int(sizes[:, 1].max()) if n else None},
    }


def printable(text: str) -> str:
    """``text`` with control / non-printable characters backslash-escaped.

    Class names are data read from files; a report must not let them inject
    terminal control sequences or break a table row. (Rich markup such as
    ``[bold]`` is left alone: escape it with ``rich.markup.escape`` when
    rendering with rich.)
    """
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in str(text))


def _num(value: float | int | None, digits: int = 1) -> str:
    if value is None:
        return "-"
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return f"{value:.{digits}f}"


def _range(stat: dict[str, Any]) -> str:
    if "median" in stat:
        return f"{_num(stat['min'])} / {_num(stat['median'])} / {_num(stat['max'])}"
    return f"{_num(stat['min'])} .. {_num(stat['max'])}"


def stats_rows(stats: dict[str, Any]) -> list[tuple[str, str]]:
    """``(field, value)`` string pairs of one split, ready for a two-column table."""
    per_image = stats["boxes_per_image"]
    mean_text = "-" if per_image["mean"] is None else f"{per_image['mean']:.2f}"
    rows = [(field, printable(stats[key])) for key, field in (("layout", "layout"), ("split_rule", "split"))
            if stats.get(key)]
    rows += [
        ("images", _num(stats["images"])),
        ("empty images", _num(stats["empty_images"])),
        ("boxes", _num(stats["boxes"])),
        ("boxes / image (min / mean / max)", f"{_num(per_image['min'])} / {mean_text} / {_num(per_image['max'])}"),
        ("difficult boxes", _num(stats["difficult"])),
        ("crowd boxes", _num(stats["crowd"])),
    ]
    for name, counts in stats["classes"].items():
        extra = [f"{counts[k]} {k}" for k in ("difficult", "crowd") if counts[k]]
        value = _num(counts["boxes"]) + (f" ({', '.join(extra)})" if extra else "")
        rows.append((f"class {printable(name)}", value))
    rows += [
        ("box width (min / median / max)", _range(stats["box_width"])),
        ("box height (min / median / max)", _range(stats["box_height"])),
        ("box area (min / median / max)", _range(stats["box_area"])),
        ("boxes small / medium / large", "{small} / {medium} / {large}".format(**stats["area_buckets"])),
        ("image height (min .. max)", _range(stats["image_height"])),
        ("image width (min .. max)", _range(stats["image_width"])),
    ]
    return rows


def format_stats(stats: dict[str, Any]) -> str:
    """Plain-text block of one split: a title line, then aligned ``field  value`` rows."""
    rows = stats_rows(stats)
    width = max(len(field) for field, _ in rows)
    lines = [printable(stats.get("name", "dataset"))]
    lines += [f"  {field.ljust(width)}  {value}" for field, value in rows]
    return "\n".join(lines)
