"""The one place that maps a :class:`RunConfig` to detector constructor calls."""
from __future__ import annotations

import torch
from torch import nn

from detectors.anchors import AnchorGenerator
from detectors.backbones import BackboneParts, build_backbone
from detectors.box_ops import BoxCoder
from detectors.packed_linear import pack_linears
from detectors.proposals import PrecomputedProposals
from detectors.rcnn import RCNN, RegionCNN
from detectors.roi_heads import RoIHead, RoISampler
from detectors.rpn import RegionProposalNetwork, RPNHead
from detectors.two_stage import TwoStageDetector
from harness.config import ConfigError, ModelConfig, RunConfig


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
        test_nms=m.rpn_test_nms,
        test_scores=m.rpn_test_scores,
        test_regression=m.rpn_test_regression,
    )


def build_two_stage(m: ModelConfig, parts: BackboneParts, proposal_source: nn.Module, num_classes: int,
                    *, test_box_regression: bool = True) -> TwoStageDetector:
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
        box_regression=not m.cls_only,
        test_box_regression=test_box_regression,
        score_thresh=m.score_thresh,
        nms_thresh=m.nms_thresh,
        max_detections=m.max_detections,
        size_divisible=parts.stride,
    )


def build_model(cfg: RunConfig, num_classes: int) -> nn.Module:
    """Build the configured detector for ``num_classes`` object classes."""
    m = cfg.model
    try:
        parts = build_backbone(m.backbone, weights=m.weights, freeze_stages=m.freeze_stages, frozen_bn=m.frozen_bn,
                               weights_partial=m.weights_partial)
    except (ValueError, FileNotFoundError) as err:
        raise ConfigError(str(err)) from err
    if cfg.detector == "rcnn":
        model: nn.Module = build_rcnn(cfg, parts, num_classes)
    else:
        if cfg.detector == "fast":
            # Fast R-CNN: proposals come with the data (selective search or a file), top N kept
            source: nn.Module = PrecomputedProposals(top_n=cfg.proposals.max_proposals)
        else:
            source = build_rpn(m, parts)
        model = build_two_stage(m, parts, source, num_classes, test_box_regression=cfg.test.box_regression)
        if len(cfg.data.scales) > 1:  # the test-time image pyramid (Fast R-CNN 5.2)
            side = cfg.data.pyramid_roi_side or 224.0 * cfg.data.min_size / 600
            model.set_test_pyramid(cfg.data.scales, cfg.data.max_size, side)
    if m.channels_last:
        # 4-D (conv) weights only; a convolution given channels-last weights also returns its output, and so
        # the next layer's input, channels-last; values and shapes are unchanged (NCHW semantics throughout)
        model.to(memory_format=torch.channels_last)
    if m.packed_linear:
        pack_linears(model)
    model.weights_report = parts.weights_report  # the run record's init (None: random init)
    return model


def build_rcnn(cfg: RunConfig, parts: BackboneParts, num_classes: int) -> RCNN:
    """R-CNN on the same backbone: its body and FC head run on every warped region."""
    r, m = cfg.rcnn, cfg.model
    network = RegionCNN(
        body=parts.body,
        box_head=parts.box_head,
        out_channels=parts.out_channels,
        representation_size=parts.representation_size,
        pooled_size=m.pooled_size or parts.pooled_size,
        num_classes=num_classes,
    )
    try:
        return RCNN(
            network=network,
            num_classes=num_classes,
            mean=parts.mean,
            std=parts.std,
            crop_size=r.crop_size,
            padding=r.padding(),
            feature_layer=r.feature_layer,
            classifier=r.classifier,
            box_regression=r.bbox_reg,
            batch_size=r.batch_size,
            train_proposals=r.proposals(cfg.proposals.max_proposals)[0],
            test_proposals=r.proposals(cfg.proposals.max_proposals)[1],
            finetune_batch=r.finetune_batch,
            fg_fraction=r.finetune_fg_fraction,
            fg_iou=r.fg_iou,
            score_thresh=r.svm_score_thresh if r.classifier == "svm" else m.score_thresh,
            nms_thresh=m.nms_thresh,
            max_detections=m.max_detections,
        )
    except ValueError as err:  # e.g. rcnn.feature_layer=fc6 on a ResNet (no fc6)
        raise ConfigError(f"rcnn: {err}") from err
