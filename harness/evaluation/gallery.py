"""What the report's detection gallery needs from a run: ``results/<run_id>/gallery.json``.

The run keeps, for ``test.gallery_images`` test images, a small JPEG thumbnail
(longer side :data:`THUMB_SIDE` px, quality :data:`JPEG_QUALITY`, base64), the
ground truth and the detections (scores >= the model's own threshold, at most
:data:`MAX_DETECTIONS`), in the image's original pixels. The images are picked
by key (file name, or the image id for generated data) ranked by
``sha1(test.gallery_seed:key)``: every run of a dataset that tested the same
images keeps the same ones, whatever the detector. The report then draws them
(:func:`harness.evaluation.drawing.draw_boxes`) without the dataset::

    {"seed": 0, "iou": 0.5, "images": [{"key", "digest", "width", "height", "thumb_scale", "thumb_jpeg",
     "gt": [{"box": [x1, y1, x2, y2], "class": "car"}], "detections": [{"box", "class", "score"}]}]}

:func:`match_boxes` sorts a shown detection into true or false positive and a
ground-truth box into found or missed, at IoU 0.5, greedily by score, one
detection per ground-truth box of the same class (as VOC AP matches them).
"""
from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from harness.evaluation.arrays import gt_arrays, pred_arrays
from harness.evaluation.drawing import jpeg_bytes, thumbnail
from harness.run.storage import atomic_write_bytes

GALLERY_FILE = "gallery.json"
THUMB_SIDE = 320
JPEG_QUALITY = 70
MAX_DETECTIONS = 50
MATCH_IOU = 0.5


def image_key(dataset: Any, index: int, target: dict) -> str:
    """A test image's stable key: its file name (relative to the split's common folder) or its image id."""
    image_path = getattr(dataset, "image_path", None)
    if image_path is not None:
        return Path(image_path(index)).name
    return f"image {int(target.get('image_id', index))}"


def pick_images(keys: Sequence[str], count: int, seed: int) -> list[int]:
    """Indices of ``count`` of ``keys``: the smallest ``sha1(seed:key)``, in that order."""
    ranked = sorted(range(len(keys)), key=lambda i: hashlib.sha1(f"{seed}:{keys[i]}".encode()).hexdigest())
    return ranked[:count]


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes ``a [N, 4]`` and ``b [M, 4]`` (xyxy) -> ``[N, M]``."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(axis=2)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(axis=1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def match_boxes(dets: list[dict], gts: list[dict], iou: float = MATCH_IOU) -> tuple[list[bool], list[bool]]:
    """``(detection is a true positive, ground-truth box was found)`` for gallery entries
    (``{"box", "class", "score"}`` / ``{"box", "class"}``): greedy by score, same class, IoU >= ``iou``."""
    found = [False] * len(gts)
    tp = [False] * len(dets)
    if not dets or not gts:
        return tp, found
    overlaps = _iou(np.asarray([d["box"] for d in dets], float), np.asarray([g["box"] for g in gts], float))
    for d in sorted(range(len(dets)), key=lambda i: -float(dets[i]["score"])):
        best, best_iou = -1, iou
        for g in range(len(gts)):
            if not found[g] and gts[g]["class"] == dets[d]["class"] and overlaps[d, g] >= best_iou:
                best, best_iou = g, overlaps[d, g]
        if best >= 0:
            found[best], tp[d] = True, True
    return tp, found


def gallery_entries(
    dataset: Any,
    predictions: Sequence[dict],
    ground_truth: Sequence[dict],
    *,
    count: int,
    seed: int,
) -> dict[str, Any]:
    """The gallery of a tested run (see the module docstring); reads the chosen images' pixels."""
    names = dataset.class_names
    keys = [image_key(dataset, i, ground_truth[i]) for i in range(len(predictions))]
    images = []
    for i in pick_images(keys, count, seed):
        pixels = dataset.load_image(i)
        thumb, scale = thumbnail(pixels, THUMB_SIDE)
        gt_boxes, gt_labels, _, _ = gt_arrays(ground_truth[i])
        boxes, labels, scores = pred_arrays(predictions[i])
        order = np.argsort(-scores, kind="stable")[:MAX_DETECTIONS]
        images.append({
            "key": keys[i],
            "digest": hashlib.sha256(np.ascontiguousarray(pixels).data).hexdigest()[:16],
            "width": int(pixels.shape[1]),
            "height": int(pixels.shape[0]),
            "thumb_scale": scale,
            "thumb_jpeg": base64.b64encode(jpeg_bytes(thumb, quality=JPEG_QUALITY)).decode("ascii"),
            "gt": [{"box": [round(float(v), 2) for v in b], "class": names[int(k)]}
                   for b, k in zip(gt_boxes, gt_labels)],
            "detections": [{"box": [round(float(v), 2) for v in boxes[j]], "class": names[int(labels[j])],
                            "score": round(float(scores[j]), 4)} for j in order],
        })
    return {"seed": seed, "iou": MATCH_IOU, "images": images}


def write_gallery(run_dir: Path, dataset: Any, predictions: Sequence[dict], ground_truth: Sequence[dict], *,
                  count: int, seed: int) -> dict[str, Any] | None:
    """Write ``run_dir/gallery.json``; returns the record's ``gallery`` entry (``None`` when ``count`` is 0)."""
    if count <= 0:
        return None
    gallery = gallery_entries(dataset, predictions, ground_truth, count=count, seed=seed)
    data = json.dumps(gallery).encode()
    atomic_write_bytes(Path(run_dir) / GALLERY_FILE, data, what="gallery")
    return {"file": GALLERY_FILE, "images": len(gallery["images"]), "seed": seed, "bytes": len(data)}


def read_gallery(path: Path) -> dict[str, Any] | None:
    """A run's gallery, or ``None`` when it is missing or unreadable."""
    try:
        gallery = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return gallery if isinstance(gallery, dict) and isinstance(gallery.get("images"), list) else None
