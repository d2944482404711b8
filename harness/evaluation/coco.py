"""COCO metrics through ``pycocotools.cocoeval`` (never re-implemented here): our detections and
ground truth converted to COCO's JSON (``xywh``, category ids), AP@[.5:.95], AP50, AP75, S/M/L.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from harness.evaluation.arrays import (
    Prediction,
    Target,
    as_numpy,
    default_label_to_category,
    float_or_none,
    gt_arrays,
    image_id_of,
    pred_arrays,
)
from harness.run.storage import atomic_write_bytes

# Order of COCOeval.stats[:6] (bbox): AP@[.5:.95], AP50, AP75, AP small/medium/large.
COCO_STAT_KEYS = (
    "coco_ap",
    "coco_ap50",
    "coco_ap75",
    "coco_ap_small",
    "coco_ap_medium",
    "coco_ap_large",
)


def to_coco_results(
    predictions: Sequence[Prediction],
    ground_truth: Sequence[Target],
    label_to_category: Mapping[int, int] | None = None,
) -> list[dict[str, Any]]:
    """Detections in the COCO results format.

    Args:
        predictions: per image, ``{"boxes" [M, 4] xyxy, "labels" [M], "scores" [M]}``.
        ground_truth: the matching targets (only ``image_id`` is read).
        label_to_category: label ``k`` → COCO category id; identity if ``None``.

    Returns:
        ``[{"image_id": int, "category_id": int, "bbox": [x, y, w, h], "score": float}, ...]``
        with Python scalars only.
    """
    if len(predictions) != len(ground_truth):
        raise ValueError(f"{len(predictions)} predictions for {len(ground_truth)} images")
    results: list[dict[str, Any]] = []
    for index, (pred, target) in enumerate(zip(predictions, ground_truth)):
        boxes, labels, scores = pred_arrays(pred)
        image_id = image_id_of(target, index)
        for (x1, y1, x2, y2), label, score in zip(boxes.tolist(), labels.tolist(), scores.tolist()):
            category = label if label_to_category is None else label_to_category[label]
            results.append({
                "image_id": image_id,
                "category_id": int(category),
                "bbox": [x1, y1, x2 - x1, y2 - y1],
                "score": score,
            })
    return results


def write_coco_results(
    path: str | os.PathLike[str],
    predictions: Sequence[Prediction],
    ground_truth: Sequence[Target],
    label_to_category: Mapping[int, int] | None = None,
) -> Path:
    """Write :func:`to_coco_results` as a JSON detections file, atomically.

    Written with :func:`harness.run.storage.atomic_write`: readers never see a partial file, and a full
    disk is a :class:`~harness.run.storage.StorageError` naming the file.
    Note that ``COCO.loadRes`` wants ``str(path)`` and cannot load an empty list.

    Returns:
        The path written.
    """
    path = Path(path)
    results = to_coco_results(predictions, ground_truth, label_to_category)
    atomic_write_bytes(path, json.dumps(results).encode(), what="detections file")
    return path


def coco_ground_truth(
    ground_truth: Sequence[Target],
    class_names: Sequence[str],
    label_to_category: Mapping[int, int] | None = None,
) -> COCO:
    """An in-memory ``COCO`` ground-truth object built from targets.

    ``area = w * h`` of the box (so the small / medium / large split is in the
    frame of the given boxes: pass original-frame boxes for official numbers).
    VOC ``difficult`` boxes are written with ``iscrowd=1``, pycocotools' only
    ignore mechanism: they are never positives, and detections on them are
    ignored, but matching uses crowd IoU semantics (intersection over the
    *detection* area, and one crowd box may absorb several detections).
    COCO crowd boxes are written with ``iscrowd=1`` as usual.

    Args:
        ground_truth: targets; ``image_id`` must be unique.
        class_names: ``class_names[0]`` is background; ``class_names[k]`` is label ``k``.
        label_to_category: label → category id; identity ``1..K`` if ``None``.
    """
    num_classes = len(class_names) - 1
    mapping = label_to_category or default_label_to_category(num_classes)
    images, annotations = [], []
    for index, target in enumerate(ground_truth):
        image_id = image_id_of(target, index)
        size = target.get("size", target.get("orig_size"))
        h, w = (int(v) for v in as_numpy(size, np.int64)) if size is not None else (0, 0)
        images.append({"id": image_id, "height": h, "width": w})
        boxes, labels, difficult, iscrowd = gt_arrays(target)
        ignored = (difficult | iscrowd).tolist()
        for (x1, y1, x2, y2), label, ignore in zip(boxes.tolist(), labels.tolist(), ignored):
            bw, bh = x2 - x1, y2 - y1
            annotations.append({
                "id": len(annotations) + 1,  # COCOeval needs ids > 0 (0 means "unmatched")
                "image_id": image_id,
                "category_id": int(mapping[label]),
                "bbox": [x1, y1, bw, bh],
                "area": bw * bh,
                "iscrowd": int(ignore),
            })
    if len({im["id"] for im in images}) != len(images):
        raise ValueError("ground_truth image_id values must be unique")
    categories = [{"id": int(mapping[k]), "name": str(class_names[k])} for k in range(1, num_classes + 1)]
    coco = COCO()
    coco.dataset = {"images": images, "annotations": annotations, "categories": categories}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def coco_stats(coco_gt: COCO, results: list[dict[str, Any]]) -> dict[str, float | None]:
    """Run ``COCOeval`` (bbox) and return the first six ``stats``.

    With no detections (``loadRes`` cannot load an empty list) an empty
    results object is built directly, and COCOeval yields 0.0 wherever there
    is gt. pycocotools' ``-1`` ("no gt in this area range") becomes ``None``.

    Returns:
        ``{key: float | None for key in COCO_STAT_KEYS}``.
    """
    with contextlib.redirect_stdout(io.StringIO()):
        if results:
            coco_dt = coco_gt.loadRes([dict(r, bbox=list(r["bbox"])) for r in results])  # loadRes mutates
        else:
            coco_dt = COCO()
            coco_dt.dataset = {
                "images": list(coco_gt.dataset["images"]),
                "annotations": [],
                "categories": list(coco_gt.dataset["categories"]),
            }
            coco_dt.createIndex()
        evaluator = COCOeval(coco_gt, coco_dt, iouType="bbox")
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {key: float_or_none(value) for key, value in zip(COCO_STAT_KEYS, evaluator.stats[:6])}


