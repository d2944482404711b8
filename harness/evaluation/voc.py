"""PASCAL VOC AP at IoU 0.5: our own code, a line-by-line port of the official VOC devkit /
py-faster-rcnn ``voc_eval``: the VOC2007 11-point interpolation and the VOC2010+ area under the
monotone precision envelope. ``difficult`` boxes are neither true nor false positives.

Shape shorthand: N ground-truth boxes in one image, D detections of one class over all images.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torchvision.ops import box_iou

MAX_CURVE_POINTS = 101
CURVE_DECIMALS = 4  # a PR-curve point to 0.01 %: far below a plot's resolution


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


def downsample_curve(recall: np.ndarray, precision: np.ndarray) -> dict[str, list[float]]:
    """At most ``MAX_CURVE_POINTS`` evenly spaced points (first and last kept), as lists rounded to
    ``CURVE_DECIMALS`` (the curves are for plots; full float digits made them most of a run record)."""
    n = recall.shape[0]
    keep: Any = slice(None)
    if n > MAX_CURVE_POINTS:
        keep = np.unique(np.linspace(0, n - 1, MAX_CURVE_POINTS).round().astype(np.int64))
    return {"recall": [round(float(r), CURVE_DECIMALS) for r in recall[keep]],
            "precision": [round(float(p), CURVE_DECIMALS) for p in precision[keep]]}


