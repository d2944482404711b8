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

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchvision.ops import box_iou

from harness.evaluation.arrays import (
    Prediction,
    Target,
    gt_arrays,
    pred_arrays,
)
from harness.evaluation.coco import (
    coco_ground_truth,
    coco_stats,
    to_coco_results,
)
from harness.evaluation.voc import downsample_curve, voc_eval_class


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
    preds = [pred_arrays(p) for p in predictions]
    gts = [gt_arrays(t) for t in ground_truth]
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
        pr_curves[name] = downsample_curve(result.recall, result.precision)

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
