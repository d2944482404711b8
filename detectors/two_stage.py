"""The composer: images -> backbone -> proposal source -> RoI head -> post-processing.

Faster R-CNN plugs a Region Proposal Network into the proposal slot; Fast R-CNN
plugs precomputed (selective search) proposals into the same slot, and nothing
else changes. The interface is torchvision's: ``model(images, targets)`` returns
a dict of losses in training and a list of ``{"boxes", "labels", "scores"}`` in
evaluation, boxes in each input image's own frame.

Shape shorthand: B = images, C = channels, Hp, Wp = padded batch size.
"""
from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from contextlib import AbstractContextManager

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .box_ops import BoxCoder
from .proposals import ImageBatch, ProposalSource
from .roi_heads import RoIHead, RoISampler, fast_rcnn_losses, postprocess_detections, select_detections

StageTimer = Callable[[str], AbstractContextManager]


def no_timer(name: str) -> AbstractContextManager:
    return contextlib.nullcontext()


class TwoStageDetector(nn.Module):
    """Shared-feature two-stage detector (Fast / Faster R-CNN).

    Args:
        body: stride-16 conv body (see :mod:`detectors.backbones`).
        proposal_source: an RPN or precomputed proposals.
        roi_head: RoI pooling + FC layers + sibling outputs.
        sampler: RoI mini-batch sampler used in training.
        mean, std: input normalisation.
        box_weight: lambda of the RoI head's box loss.
        box_regression: ``False`` trains the classifier alone (no box loss) and tests
            with the proposals themselves as boxes: the classification-only arm of
            Fast R-CNN's multi-task vs stage-wise ablation (section 5.1).
        test_box_regression: ``False`` trains as ``box_regression`` says but tests with
            the proposals as boxes (bbox_pred ignored): Table 6's multi-task column
            tested without box regression.
        score_thresh, nms_thresh, max_detections: post-processing (0.05, 0.3, 100).
        size_divisible: pad the batch to a multiple of this (the stride).
    """

    def __init__(
        self,
        *,
        body: nn.Module,
        proposal_source: ProposalSource,
        roi_head: RoIHead,
        sampler: RoISampler,
        mean: tuple[float, float, float],
        std: tuple[float, float, float],
        box_weight: float = 1.0,
        box_regression: bool = True,
        test_box_regression: bool = True,
        score_thresh: float = 0.05,
        nms_thresh: float = 0.3,
        max_detections: int = 100,
        size_divisible: int = 16,
    ) -> None:
        super().__init__()
        self.body, self.proposal_source, self.roi_head = body, proposal_source, roi_head
        self.sampler = sampler
        self.box_coder: BoxCoder = sampler.box_coder
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.box_weight, self.box_regression = box_weight, box_regression
        self.test_box_regression = test_box_regression
        self.score_thresh, self.nms_thresh, self.max_detections = score_thresh, nms_thresh, max_detections
        self.size_divisible = size_divisible
        self.svms: tuple[Tensor, Tensor, float] | None = None  # (W [K, D], b [K], feature scale): see set_svms
        self.set_test_pyramid(())

    def set_test_pyramid(self, scales: tuple[int, ...], max_size: int = 1000, roi_side: float = 224.0) -> None:
        """Multi-scale testing (Fast R-CNN 5.2): the image at every shorter side in ``scales`` (longer side at
        most ``max_size``); each RoI pooled from the scale where its scaled area is closest to ``roi_side``^2
        (SPPnet's rule, which Fast R-CNN follows). Fewer than two scales: the single-scale test."""
        self.test_scales, self.test_max_size, self.roi_side = tuple(scales), max_size, roi_side

    def set_svms(self, weight: Tensor | None, bias: Tensor | None = None, scale: float = 1.0,
                 score_thresh: float = -1.0) -> None:
        """Score test RoIs with per-class linear SVMs on the head's last FC features instead of the
        softmax (Fast R-CNN Table 8); ``None`` restores the softmax. Boxes still come from bbox_pred."""
        self.svms = None if weight is None else (weight, bias, scale)
        self.svm_score_thresh = score_thresh

    def _svm_detections(self, features: Tensor, proposals: list[Tensor], deltas: Tensor,
                        image_sizes: list[tuple[int, int]]) -> list[dict[str, Tensor]]:
        weight, bias, scale = self.svms
        x = self.roi_head.features(features, proposals).float() * scale
        scores_all = x @ weight.to(x).T + bias.to(x)  # [R, K]
        boxes_all = self.box_coder.decode(torch.cat(proposals), deltas)
        results, start = [], 0
        for rois, size in zip(proposals, image_sizes):
            end = start + rois.shape[0]
            boxes = boxes_all[start:end].reshape(rois.shape[0], -1, 4)[:, 1:]
            results.append(select_detections(boxes, scores_all[start:end], size, score_thresh=self.svm_score_thresh,
                                             nms_thresh=self.nms_thresh, max_detections=self.max_detections))
            start = end
        return results

    def batch_images(self, images: list[Tensor]) -> ImageBatch:
        """Normalise and zero-pad ``[3, H_i, W_i]`` images into ``[B, 3, Hp, Wp]``."""
        sizes = [(int(im.shape[-2]), int(im.shape[-1])) for im in images]
        d = self.size_divisible
        hp = int(math.ceil(max(h for h, _ in sizes) / d) * d)
        wp = int(math.ceil(max(w for _, w in sizes) / d) * d)
        batch = torch.stack(
            [F.pad((im - self.mean[0]) / self.std[0], (0, wp - w, 0, hp - h)) for im, (h, w) in zip(images, sizes)]
        )
        return ImageBatch(batch, sizes)

    @torch.no_grad()
    def propose(
        self, images: list[Tensor], targets: list[dict] | None = None, *, top_n: int | None = None
    ) -> list[Tensor]:
        """Proposals alone (in eval mode: the test-time top-N, or ``top_n``), for proposal-recall curves."""
        batch = self.batch_images(images)
        proposals, _ = self.proposal_source(batch, self.body(batch.tensors), targets, top_n=top_n)
        return proposals

    def forward(
        self, images: list[Tensor], targets: list[dict] | None = None, *, timer: StageTimer = no_timer
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        """Args:
            images: B float32 ``[3, H_i, W_i]`` tensors in [0, 1].
            targets: B target dicts (data contract); required in training. In
                evaluation, targets may carry ``proposals`` for a precomputed source.
            timer: ``timer(stage)`` context manager wrapping each stage (backbone,
                proposals, head, postprocess); the harness passes its stage timer.
        """
        if self.training and targets is None:
            raise ValueError("targets are required in training")
        if not self.training and len(self.test_scales) > 1:
            return self._pyramid_forward(images, targets, timer)
        with timer("backbone"):
            batch = self.batch_images(images)
            features = self.body(batch.tensors)
        with timer("proposals"):
            proposals, losses = self.proposal_source(batch, features, targets)
        if self.training:
            rois, labels, box_targets = self.sampler(proposals, targets)
            logits, deltas = self.roi_head(features, rois)
            weight = self.box_weight if self.box_regression else 0.0
            losses.update(fast_rcnn_losses(logits, deltas, labels, box_targets, box_weight=weight))
            return losses
        with timer("head"):
            logits, deltas = self.roi_head(features, proposals)
            if not (self.box_regression and self.test_box_regression):
                deltas = torch.zeros_like(deltas)  # decode to the proposals unchanged
            if self.svms is not None:  # SVM scores and their post-processing, timed as the head
                return self._svm_detections(features, proposals, deltas, batch.image_sizes)
        with timer("postprocess"):
            return postprocess_detections(
                logits,
                deltas,
                proposals,
                batch.image_sizes,
                box_coder=self.box_coder,
                score_thresh=self.score_thresh,
                nms_thresh=self.nms_thresh,
                max_detections=self.max_detections,
            )

    def _pyramid_forward(self, images: list[Tensor], targets: list[dict] | None,
                         timer: StageTimer) -> list[dict[str, Tensor]]:
        """The image pyramid, one image at a time; boxes in the frame of the image given."""
        results = []
        for b, image in enumerate(images):
            h, w = int(image.shape[-2]), int(image.shape[-1])
            factors = [pyramid_factor(h, w, s, self.test_max_size) for s in self.test_scales]
            with timer("proposals"):
                base = self.batch_images([image])
                (rois,), _ = self.proposal_source(base, base.tensors, None if targets is None else [targets[b]])
            levels = assign_pyramid_levels(rois, factors, self.roi_side)
            with timer("backbone"):
                feats = []
                for f in factors:
                    scaled = F.interpolate(image[None], size=(max(1, round(h * f)), max(1, round(w * f))),
                                           mode="bilinear", align_corners=False)[0]
                    feats.append(self.body(self.batch_images([scaled]).tensors))
            with timer("head"):
                x = None
                for lvl, (f, feat) in enumerate(zip(factors, feats)):
                    idx = torch.nonzero(levels == lvl).flatten()
                    if idx.numel() == 0:
                        continue
                    part = self.roi_head.box_head(self.roi_head.pool(feat, [rois[idx] * f]))
                    if x is None:
                        x = part.new_zeros((rois.shape[0], part.shape[1]))
                    x[idx] = part
                if x is None:  # no RoI
                    x = self.roi_head.box_head(self.roi_head.pool(feats[0], [rois]))
                logits, deltas = self.roi_head.cls_score(x), self.roi_head.bbox_pred(x)
                if not (self.box_regression and self.test_box_regression):
                    deltas = torch.zeros_like(deltas)
            with timer("postprocess"):
                results += postprocess_detections(logits, deltas, [rois], [(h, w)], box_coder=self.box_coder,
                                                  score_thresh=self.score_thresh, nms_thresh=self.nms_thresh,
                                                  max_detections=self.max_detections)
        return results


def pyramid_factor(h: int, w: int, shorter: int, max_size: int) -> float:
    """Scale factor that brings an ``h x w`` image to shorter side ``shorter``, longer side at most ``max_size``."""
    return min(shorter / min(h, w), max_size / max(h, w))


def assign_pyramid_levels(rois: Tensor, factors: list[float], roi_side: float) -> Tensor:
    """Index of the factor whose scaled RoI area ``area * f^2`` is closest to ``roi_side^2``, per RoI ``[R]``."""
    area = ((rois[:, 2] - rois[:, 0]).clamp(min=0) * (rois[:, 3] - rois[:, 1]).clamp(min=0))[:, None]
    scaled = area * torch.tensor(factors, dtype=rois.dtype, device=rois.device)[None] ** 2
    return (scaled - roi_side**2).abs().argmin(dim=1)
