"""A second test pass with truncated-SVD FC layers: head time and mAP with and without (Fast R-CNN 3.1).

The trained model is copied, the first two FC layers of the copy's box head
(fc6, fc7) are factorised (:mod:`detectors.svd`), and the copy is tested
exactly like the original. The record gets:

- ``svd``: ranks, how they were chosen, per-layer shapes, multiply-adds and
  approximation error, and head time / mAP side by side (``without_svd``,
  ``with_svd``);
- ``metrics_svd``: the SVD pass's headline metrics;
- ``timing.svd``: its per-stage times.
"""
from __future__ import annotations

import copy
from dataclasses import asdict
from typing import Any

import torch
from torch import nn

from detectors.svd import (
    PAPER_RANK_FRACTIONS,
    compress_fc_layers,
    default_ranks,
    fc_layers,
)
from harness.config import ConfigError, TestConfig
from harness.data.base import DetectionDataset
from harness.evaluation.detection import evaluate_detections
from harness.evaluation.timing import StageTimer
from harness.train.engine import Progress, predict

HEADLINE = ("map50_voc07", "map50_area", "coco_ap", "coco_ap50", "coco_ap75")


def svd_test_pass(
    model: nn.Module,
    test_set: DetectionDataset,
    cfg: TestConfig,
    *,
    device: torch.device,
    base_metrics: dict[str, Any],
    base_timer: StageTimer,
    fold: Any = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """Test a truncated-SVD copy of ``model``; returns the record parts named in the module docstring.

    Args:
        model: trained two-stage detector (left unchanged).
        test_set, cfg: as for :func:`harness.train.engine.predict`.
        base_metrics, base_timer: the pass without SVD, for the side-by-side summary.
        fold: ``fold(timer)`` adds time spent outside the network (selective search)
            to the SVD pass, as it was added to the first.
    """
    head = model.roi_head.box_head
    if not fc_layers(head):
        return {"svd": {"applied": False, "reason": "the box head has no FC layers (C4 ResNet head: res5)"}}
    ranks = tuple(cfg.svd_ranks) or default_ranks(head)
    compressed = copy.deepcopy(model)
    try:
        layers = compress_fc_layers(compressed.roi_head.box_head, ranks)
    except ValueError as err:
        raise ConfigError(f"test.svd_ranks: {err}") from None
    predictions, timer = predict(compressed, test_set, cfg, device=device, progress=progress)
    if fold is not None:
        fold(timer)
    ground_truth = [test_set.annotation(i) for i in range(len(predictions))]
    metrics = evaluate_detections(
        predictions, ground_truth, test_set.class_names, label_to_category=test_set.label_to_category
    )
    rule = (
        "test.svd_ranks"
        if cfg.svd_ranks
        else f"paper fractions {PAPER_RANK_FRACTIONS[0]:g} (fc6) and {PAPER_RANK_FRACTIONS[1]:g} (fc7) "
        "of each layer's width (VGG16: 1024, 256)"
    )
    head_before, head_after = base_timer.medians().get("head"), timer.medians().get("head")
    return {
        "svd": {
            "applied": True,
            "ranks": list(ranks),
            "rank_rule": rule,
            "layers": [asdict(r) for r in layers],
            "head_s_per_img": {"without_svd": head_before, "with_svd": head_after},
            "head_time_change": (head_after / head_before - 1.0) if head_before and head_after else None,
            "map50_area": {"without_svd": base_metrics.get("map50_area"), "with_svd": metrics.get("map50_area")},
            "map50_voc07": {"without_svd": base_metrics.get("map50_voc07"), "with_svd": metrics.get("map50_voc07")},
        },
        "metrics_svd": {k: metrics.get(k) for k in HEADLINE},
        "timing_svd": {
            "test_s_per_img": timer.summary(),
            "test_s_per_img_without_proposals": timer.summary_without("proposals"),
            "stages": timer.medians(),
        },
    }
