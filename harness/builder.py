"""The one place that maps a :class:`RunConfig` to detector constructor calls."""
from __future__ import annotations

from torch import nn

from detectors.anchors import AnchorGenerator
from detectors.backbones import BackboneParts, build_backbone
from detectors.box_ops import BoxCoder
from detectors.roi_heads import RoIHead, RoISampler
from detectors.rpn import RegionProposalNetwork, RPNHead
from detectors.two_stage import TwoStageDetector
from harness.config import ConfigError, ModelConfig, RunConfig

AVAILABLE = ("faster",)
PENDING = {
    "fast": "Fast R-CNN (selective-search proposals) is not available yet: see issue 4",
    "rcnn": "R-CNN (warped regions, SVMs) is not available yet: see issue 5",
}


def build_rpn(m: ModelConfig, parts: BackboneParts) -> RegionProposalNetwork:
    anchors = AnchorGenerator(sizes=m.anchor_sizes, ratios=m.anchor_ratios, stride=parts.stride)
    return RegionProposalNetwork(
        anchor_generator=anchors,
        head=RPNHead(parts.out_channels, anchors.num_anchors),
        fg_iou=m.rpn_fg_iou,
        bg_iou=m.rpn_bg_iou,
        batch_size_per_image=m.rpn_batch_size,
        positive_fraction=m.rpn_positive_fraction,
        pre_nms_top_n={"train": m.rpn_pre_nms_top_n_train, "test": m.rpn_pre_nms_top_n_test},
        post_nms_top_n={"train": m.rpn_post_nms_top_n_train, "test": m.rpn_post_nms_top_n_test},
        nms_thresh=m.rpn_nms_thresh,
        ignore_cross_boundary=m.rpn_ignore_cross_boundary,
        box_weight=m.rpn_box_weight,
    )


def build_two_stage(m: ModelConfig, parts: BackboneParts, proposal_source: nn.Module, num_classes: int) -> TwoStageDetector:
    """Fast R-CNN's head and post-processing around any proposal source."""
    coder = BoxCoder((0.1, 0.1, 0.2, 0.2))
    head = RoIHead(
        box_head=parts.box_head,
        representation_size=parts.representation_size,
        num_classes=num_classes,
        pooler=m.pooler,
        pooled_size=m.pooled_size or parts.pooled_size,
        spatial_scale=1.0 / parts.stride,
    )
    sampler = RoISampler(
        batch_size_per_image=m.roi_batch_size,
        positive_fraction=m.roi_positive_fraction,
        fg_iou=m.roi_fg_iou,
        bg_iou_high=m.roi_bg_iou_high,
        bg_iou_low=m.roi_bg_iou_low,
        box_coder=coder,
    )
    return TwoStageDetector(
        body=parts.body,
        proposal_source=proposal_source,
        roi_head=head,
        sampler=sampler,
        mean=parts.mean,
        std=parts.std,
        box_weight=m.box_weight,
        score_thresh=m.score_thresh,
        nms_thresh=m.nms_thresh,
        max_detections=m.max_detections,
        size_divisible=parts.stride,
    )


def build_model(cfg: RunConfig, num_classes: int) -> nn.Module:
    """Build the configured detector for ``num_classes`` object classes."""
    if cfg.detector in PENDING:
        raise ConfigError(PENDING[cfg.detector])
    m = cfg.model
    try:
        parts = build_backbone(m.backbone, weights=m.weights, freeze_stages=m.freeze_stages)
    except (ValueError, FileNotFoundError) as err:
        raise ConfigError(str(err)) from err
    return build_two_stage(m, parts, build_rpn(m, parts), num_classes)
