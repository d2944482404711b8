"""The one evaluator shared by R-CNN, Fast R-CNN and Faster R-CNN.

Two families of metrics are computed from the same inputs:

- PASCAL VOC AP at IoU 0.5 (our own code, a line-by-line port of the official
  VOC devkit / py-faster-rcnn ``voc_eval``): the VOC2007 11-point
  interpolation and the VOC2010+ area under the monotone precision envelope.
- COCO AP@[.5:.95], AP50, AP75 and the small / medium / large split, computed
  by ``pycocotools.cocoeval.COCOeval`` (never re-implemented here).

Inputs follow the data contract of :mod:`harness.data.base`:

- ``predictions[i]``: ``{"boxes": float32 [M, 4] xyxy, "labels": int64 [M]
  (1..K), "scores": float32 [M]}`` for image ``ground_truth[i]``, in the same
  frame as the ground-truth boxes (torch tensors or numpy arrays).
- ``ground_truth[i]``: a target dict (``boxes`` [N, 4], ``labels`` [N],
  ``difficult`` [N], ``iscrowd`` [N], ``image_id``, ``orig_size``).

Shape shorthand: M detections in one image, N ground-truth boxes in one
image, D detections of one class over all images, K object classes.

Boxes are continuous xyxy (no VOC "+1" pixel convention), so IoUs come from
``torchvision.ops.box_iou`` and equal the ones pycocotools computes.
"""
from __future__ import annotations

import contextlib
import io
import json
import math
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
from torchvision.ops import box_iou

Prediction = Mapping[str, Any]
Target = Mapping[str, Any]

# Order of COCOeval.stats[:6] (bbox): AP@[.5:.95], AP50, AP75, AP small/medium/large.
COCO_STAT_KEYS = (
    "coco_ap",
    "coco_ap50",
    "coco_ap75",
    "coco_ap_small",
    "coco_ap_medium",
    "coco_ap_large",
)
MAX_CURVE_POINTS = 101


# --------------------------------------------------------------------------- helpers


def _as_numpy(x: Any, dtype: Any, shape_tail: tuple[int, ...] = ()) -> np.ndarray:
    """Tensor / ndarray / list → contiguous numpy array of ``dtype``, shape ``[-1, *shape_tail]``."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.ascontiguousarray(np.asarray(x, dtype=dtype).reshape((-1, *shape_tail)))


def _gt_arrays(target: Target) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(boxes [N, 4] float64, labels [N] int64, difficult [N] bool, iscrowd [N] bool)``."""
    boxes = _as_numpy(target["boxes"], np.float64, (4,))
    labels = _as_numpy(target["labels"], np.int64)
    n = labels.shape[0]
    flags = []
    for key in ("difficult", "iscrowd"):
        value = target.get(key)
        flags.append(np.zeros(n, dtype=bool) if value is None else _as_numpy(value, bool))
    return boxes, labels, flags[0], flags[1]


def _pred_arrays(pred: Prediction) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(boxes [M, 4] float64, labels [M] int64, scores [M] float64)``."""
    boxes = _as_numpy(pred["boxes"], np.float64, (4,))
    labels = _as_numpy(pred["labels"], np.int64)
    scores = _as_numpy(pred["scores"], np.float64)
    if not boxes.shape[0] == labels.shape[0] == scores.shape[0]:
        raise ValueError(
            f"prediction has {boxes.shape[0]} boxes, {labels.shape[0]} labels, {scores.shape[0]} scores"
        )
    return boxes, labels, scores


def _image_id(target: Target, index: int) -> int:
    return int(target.get("image_id", index))


def _default_label_to_category(num_classes: int) -> dict[int, int]:
    return {k: k for k in range(1, num_classes + 1)}


def _float_or_none(x: float | None) -> float | None:
    """Python float, or ``None`` for missing / NaN / pycocotools' ``-1`` sentinel."""
    if x is None:
        return None
    x = float(x)
    return None if (math.isnan(x) or x < 0) else x


# --------------------------------------------------------------------------- VOC AP


def voc_ap(recall: np.ndarray, precision: np.ndarray, *, use_07_metric: bool) -> float:
    """Average precision from a precision / recall curve, as the VOC devkit computes it.

    Args:
        recall: ``float [D]``, non-decreasing recall after each ranked detection.
        precision: ``float [D]``, precision after each ranked detection.
        use_07_metric: ``True``: VOC2007 11-point interpolation, the mean over
            ``t in np.arange(0, 1.1, 0.1)`` of ``max(precision[recall >= t])``
            (0 where no point reaches ``t``). The thresholds are taken exactly
            as py-faster-rcnn does, so ``0.3, 0.6, 0.7`` are the float values
            ``np.arange`` yields (slightly above the decimals). ``False``:
            VOC2010+ area under the monotone envelope (right-to-left running
            max of precision), summed where recall changes.

    Returns:
        AP in ``[0, 1]``; ``0.0`` for empty inputs.
    """
    recall = np.asarray(recall, dtype=np.float64).reshape(-1)
    precision = np.asarray(precision, dtype=np.float64).reshape(-1)
    if recall.shape != precision.shape:
        raise ValueError(f"recall {recall.shape} and precision {precision.shape} differ")
    if use_07_metric:
        ap = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            reached = recall >= t
            ap += (np.max(precision[reached]) if reached.any() else 0.0) / 11.0
        return float(ap)
    mrec = np.concatenate(([0.0], recall, [1.0]))
    mpre = np.concatenate(([0.0], precision, [0.0]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # monotone envelope, right to left
    change = np.where(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[change + 1] - mrec[change]) * mpre[change + 1]))


@dataclass
class ClassEvaluation:
    """VOC evaluation of one class.

    Attributes:
        ap50_voc07: 11-point AP, ``None`` when the class has no counted gt.
        ap50_area: area AP, ``None`` when the class has no counted gt.
        scores: ``float [D]`` detection scores in ranked order.
        tp, fp: ``bool [D]`` per ranked detection; a detection matched to an
            ignored (difficult / crowd) gt is neither.
        recall, precision: ``float [D_counted]`` after each *counted* (TP or FP)
            detection. Ignored detections are dropped from the curve; this
            leaves both APs exactly as the devkit computes them (an ignored
            detection repeats the previous recall and precision). Empty when
            the class has no counted gt.
        num_gt: counted ground truth (neither difficult nor crowd).
        num_det: all detections of the class, ``D``.
    """

    ap50_voc07: float | None
    ap50_area: float | None
    scores: np.ndarray
    tp: np.ndarray
    fp: np.ndarray
    recall: np.ndarray
    precision: np.ndarray
    num_gt: int
    num_det: int


def voc_eval_class(
    det_boxes: Sequence[np.ndarray],
    det_scores: Sequence[np.ndarray],
    gt_boxes: Sequence[np.ndarray],
    gt_ignore: Sequence[np.ndarray],
    *,
    iou_threshold: float = 0.5,
) -> ClassEvaluation:
    """VOC matching and AP of one class over a list of images.

    Detections of all images are ranked by descending score (stable sort: ties
    keep image order, then detection order). Each detection takes the gt of
    its image with the highest IoU (over all gt, matched or not, as in the
    devkit). If that IoU ``>= iou_threshold`` (devkit ``>=``; py-faster-rcnn
    uses ``>``): an ignored gt leaves the detection neither TP nor FP; an
    unmatched gt makes it TP and marks the gt; an already-matched gt makes it
    FP (duplicate). Otherwise it is FP. Ignored gt do not count as positives.

    Args:
        det_boxes: per image, ``float [M_i, 4]`` xyxy boxes of this class.
        det_scores: per image, ``float [M_i]``.
        gt_boxes: per image, ``float [N_i, 4]`` xyxy gt boxes of this class.
        gt_ignore: per image, ``bool [N_i]`` (difficult or crowd).
        iou_threshold: minimum IoU for a match.

    Returns:
        A :class:`ClassEvaluation`.
    """
    if not len(det_boxes) == len(det_scores) == len(gt_boxes) == len(gt_ignore):
        raise ValueError("det_boxes, det_scores, gt_boxes and gt_ignore need one entry per image")
    ignore = [np.asarray(g, dtype=bool).reshape(-1) for g in gt_ignore]
    num_gt = int(sum((~g).sum() for g in ignore))

    # IoU of every detection with every gt of its image: per image [M_i, N_i].
    ious, image_of_det, scores = [], [], []
    for i, (db, ds, gb) in enumerate(zip(det_boxes, det_scores, gt_boxes)):
        db_t = torch.as_tensor(np.asarray(db, dtype=np.float64).reshape(-1, 4))
        gb_t = torch.as_tensor(np.asarray(gb, dtype=np.float64).reshape(-1, 4))
        ious.append(box_iou(db_t, gb_t).numpy())
        image_of_det.append(np.stack([np.full(db_t.shape[0], i), np.arange(db_t.shape[0])], axis=1))
        scores.append(np.asarray(ds, dtype=np.float64).reshape(-1))
    scores_all = np.concatenate(scores) if scores else np.zeros(0)
    index_all = np.concatenate(image_of_det) if image_of_det else np.zeros((0, 2), dtype=np.int64)
    order = np.argsort(-scores_all, kind="stable")

    num_det = int(order.shape[0])
    tp = np.zeros(num_det, dtype=bool)
    fp = np.zeros(num_det, dtype=bool)
    matched = [np.zeros(g.shape[0], dtype=bool) for g in ignore]
    for rank, d in enumerate(order):
        image, j = index_all[d]
        overlaps = ious[image][j]  # [N_image]
        if overlaps.size == 0 or overlaps.max() < iou_threshold:
            fp[rank] = True
            continue
        best = int(overlaps.argmax())
        if ignore[image][best]:
            continue
        if matched[image][best]:
            fp[rank] = True
        else:
            tp[rank] = True
            matched[image][best] = True

    counted = tp | fp
    tp_cum = np.cumsum(tp[counted]).astype(np.float64)
    fp_cum = np.cumsum(fp[counted]).astype(np.float64)
    if num_gt > 0:
        recall = tp_cum / num_gt
        precision = tp_cum / np.maximum(tp_cum + fp_cum, np.finfo(np.float64).eps)
        ap07 = voc_ap(recall, precision, use_07_metric=True)
        ap_area = voc_ap(recall, precision, use_07_metric=False)
    else:
        recall = precision = np.zeros(0)
        ap07 = ap_area = None
    return ClassEvaluation(
        ap50_voc07=ap07,
        ap50_area=ap_area,
        scores=scores_all[order],
        tp=tp,
        fp=fp,
        recall=recall,
        precision=precision,
        num_gt=num_gt,
        num_det=num_det,
    )


def _downsample_curve(recall: np.ndarray, precision: np.ndarray) -> dict[str, list[float]]:
    """At most ``MAX_CURVE_POINTS`` evenly spaced points (first and last kept), as lists."""
    n = recall.shape[0]
    keep: Any = slice(None)
    if n > MAX_CURVE_POINTS:
        keep = np.unique(np.linspace(0, n - 1, MAX_CURVE_POINTS).round().astype(np.int64))
    return {"recall": [float(r) for r in recall[keep]], "precision": [float(p) for p in precision[keep]]}


# --------------------------------------------------------------------------- COCO


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
        boxes, labels, scores = _pred_arrays(pred)
        image_id = _image_id(target, index)
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

    The JSON goes to a temporary file in the target directory, then
    ``os.replace`` moves it into place, so readers never see a partial file.
    Note that ``COCO.loadRes`` wants ``str(path)`` and cannot load an empty list.

    Returns:
        The path written.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    results = to_coco_results(predictions, ground_truth, label_to_category)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(results, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
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
    mapping = label_to_category or _default_label_to_category(num_classes)
    images, annotations = [], []
    for index, target in enumerate(ground_truth):
        image_id = _image_id(target, index)
        size = target.get("size", target.get("orig_size"))
        h, w = (int(v) for v in _as_numpy(size, np.int64)) if size is not None else (0, 0)
        images.append({"id": image_id, "height": h, "width": w})
        boxes, labels, difficult, iscrowd = _gt_arrays(target)
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
    return {key: _float_or_none(value) for key, value in zip(COCO_STAT_KEYS, evaluator.stats[:6])}


# --------------------------------------------------------------------------- entry point


def evaluate_detections(
    predictions: Sequence[Prediction],
    ground_truth: Sequence[Target],
    class_names: Sequence[str],
    *,
    label_to_category: Mapping[int, int] | None = None,
    iou_threshold: float = 0.5,
) -> dict[str, Any]:
    """VOC and COCO metrics of one detector on one split.

    Args:
        predictions: per image, ``{"boxes": [M, 4] xyxy, "labels": [M] int64
            1..K, "scores": [M]}`` (tensors or arrays), aligned with ``ground_truth``.
        ground_truth: per image, a target dict (see :mod:`harness.data.base`).
        class_names: ``class_names[0]`` is background, ``class_names[k]`` label ``k``.
        label_to_category: label → category id for the COCO side; identity if ``None``.
        iou_threshold: VOC match threshold (COCO uses its own fixed thresholds).

    Returns:
        A JSON-serialisable dict (Python floats, no NaN):

        - ``map50_voc07``, ``map50_area``: mean VOC AP (11-point, area) over the
          classes with at least one counted (non-difficult, non-crowd) gt.
          Classes without gt appear in ``per_class`` with ``None`` APs and are
          *excluded from the mean*; the mean is ``None`` if no class has gt.
          Difficult and crowd gt are ignored.
        - ``coco_ap``, ``coco_ap50``, ``coco_ap75``, ``coco_ap_small``,
          ``coco_ap_medium``, ``coco_ap_large``: ``COCOeval.stats[:6]``
          (101-point interpolation, at most 100 detections per image);
          ``None`` where pycocotools reports -1 (no gt in that area range).
          Difficult gt count as crowd (see :func:`coco_ground_truth`).
        - ``per_class``: ``{name: {"ap50_voc07", "ap50_area", "num_gt", "num_det"}}``.
        - ``pr_curves``: ``{name: {"recall": [...], "precision": [...]}}``, at
          most 101 points each (for plotting; empty for classes without gt).
        - ``classes_without_gt``: names excluded from the VOC means.
        - ``num_images``, ``iou_threshold``.
    """
    if len(predictions) != len(ground_truth):
        raise ValueError(f"{len(predictions)} predictions for {len(ground_truth)} images")
    num_classes = len(class_names) - 1
    preds = [_pred_arrays(p) for p in predictions]
    gts = [_gt_arrays(t) for t in ground_truth]
    for _, labels, _ in preds:
        if labels.size and (labels.min() < 1 or labels.max() > num_classes):
            found = np.unique(labels).tolist()
            raise ValueError(f"predicted labels must be in 1..{num_classes}, got {found}")

    per_class: dict[str, dict[str, Any]] = {}
    pr_curves: dict[str, dict[str, list[float]]] = {}
    for k in range(1, num_classes + 1):
        result = voc_eval_class(
            det_boxes=[boxes[labels == k] for boxes, labels, _ in preds],
            det_scores=[scores[labels == k] for _, labels, scores in preds],
            gt_boxes=[boxes[labels == k] for boxes, labels, _, _ in gts],
            gt_ignore=[(difficult | iscrowd)[labels == k] for _, labels, difficult, iscrowd in gts],
            iou_threshold=iou_threshold,
        )
        name = str(class_names[k])
        per_class[name] = {
            "ap50_voc07": result.ap50_voc07,
            "ap50_area": result.ap50_area,
            "num_gt": result.num_gt,
            "num_det": result.num_det,
        }
        pr_curves[name] = _downsample_curve(result.recall, result.precision)

    with_gt = [c for c in per_class.values() if c["num_gt"] > 0]
    coco_gt = coco_ground_truth(ground_truth, class_names, label_to_category)
    coco = coco_stats(coco_gt, to_coco_results(predictions, ground_truth, label_to_category))
    return {
        "map50_voc07": float(np.mean([c["ap50_voc07"] for c in with_gt])) if with_gt else None,
        "map50_area": float(np.mean([c["ap50_area"] for c in with_gt])) if with_gt else None,
        **coco,
        "per_class": per_class,
        "pr_curves": pr_curves,
        "classes_without_gt": [name for name, c in per_class.items() if c["num_gt"] == 0],
        "num_images": len(ground_truth),
        "iou_threshold": float(iou_threshold),
    }


def proposal_recall(proposals: list[Tensor], gt_boxes: list[Tensor], counts: list[int], iou: float) -> list[float]:
    """Fraction of gt boxes covered (IoU >= ``iou``) by the first ``n`` proposals, for each n in ``counts``.

    Serves every proposal source (RPN, selective search, a file): the recall curve of each run record.
    """
    covered = torch.zeros(len(counts))
    total = 0
    for props, gt in zip(proposals, gt_boxes):
        total += gt.shape[0]
        if gt.shape[0] == 0 or props.shape[0] == 0:
            continue
        ious = box_iou(gt, props)
        for j, n in enumerate(counts):
            covered[j] += (ious[:, :n].max(dim=1).values >= iou).sum()
    return [float(c / max(total, 1)) for c in covered]
