"""Region Proposal Network (Faster R-CNN, section 3.1): a learned proposal source.

Shape shorthand: B = images, C = feature channels, Hf, Wf = feature-map size,
A = anchors per position, M = Hf * Wf * A anchors per image.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import batched_nms, clip_boxes_to_image, remove_small_boxes

from .anchors import AnchorGenerator
from .box_ops import BoxCoder, Matcher, match_to_gt, sample_balanced
from .proposals import ImageBatch


class RPNHead(nn.Module):
    """3x3 conv + ReLU, then sibling 1x1 convs: objectness (A) and deltas (4A).

    One sigmoid logit per anchor is the binary equivalent of the paper's 2k-way
    softmax and halves the classifier's parameters.
    """

    def __init__(self, in_channels: int, num_anchors: int, *, mid_channels: int | None = None) -> None:
        super().__init__()
        mid = mid_channels or in_channels
        self.conv = nn.Conv2d(in_channels, mid, 3, padding=1)
        self.cls_logits = nn.Conv2d(mid, num_anchors, 1)
        self.bbox_pred = nn.Conv2d(mid, 4 * num_anchors, 1)
        for layer in (self.conv, self.cls_logits, self.bbox_pred):
            nn.init.normal_(layer.weight, std=0.01)  # paper: zero-mean Gaussian, std 0.01
            nn.init.zeros_(layer.bias)

    def forward(self, features: Tensor) -> tuple[Tensor, Tensor]:
        """Returns objectness ``[B, M]`` and deltas ``[B, M, 4]``, anchor order of AnchorGenerator."""
        x = F.relu(self.conv(features))
        logits, deltas = self.cls_logits(x), self.bbox_pred(x)
        b, a, h, w = logits.shape
        # (B, A, Hf, Wf) -> (B, Hf, Wf, A) -> (B, M)
        logits = logits.permute(0, 2, 3, 1).reshape(b, -1)
        # (B, A*4, Hf, Wf) -> (B, A, 4, Hf, Wf) -> (B, Hf, Wf, A, 4) -> (B, M, 4)
        deltas = deltas.view(b, a, 4, h, w).permute(0, 3, 4, 1, 2).reshape(b, -1, 4)
        return logits, deltas


class RegionProposalNetwork(nn.Module):
    """Anchors + RPN head + proposal filter + (in training) anchor labelling and losses.

    Args:
        anchor_generator: anchors per position.
        head: the RPN head.
        fg_iou, bg_iou: anchor labelling thresholds (paper: > 0.7 positive, < 0.3 negative).
        batch_size_per_image, positive_fraction: anchors sampled per image (256, up to 1:1).
        pre_nms_top_n, post_nms_top_n: ``{"train": n, "test": n}`` (12000/2000, 6000/300).
        nms_thresh: NMS IoU over proposals (0.7).
        min_size: proposals smaller than this (pixels) are dropped.
        ignore_cross_boundary: anchors crossing the image border are neither
            positive nor negative in training (paper, 3.3).
        box_weight: lambda of the RPN box loss (see :meth:`losses`).
    """

    def __init__(
        self,
        *,
        anchor_generator: AnchorGenerator,
        head: RPNHead,
        fg_iou: float = 0.7,
        bg_iou: float = 0.3,
        batch_size_per_image: int = 256,
        positive_fraction: float = 0.5,
        pre_nms_top_n: dict[str, int] | None = None,
        post_nms_top_n: dict[str, int] | None = None,
        nms_thresh: float = 0.7,
        min_size: float = 1.0,
        ignore_cross_boundary: bool = True,
        box_weight: float = 1.0,
        test_nms: bool = True,
        test_scores: bool = True,
        test_regression: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__()
        # test-time ablations of Faster R-CNN Table 2: no NMS; no cls scores (boxes in a random order, seeded,
        # no ranking and so no NMS); no box regression (the anchors themselves, ranked and NMS'd)
        self.test_nms, self.test_scores, self.test_regression, self.seed = test_nms, test_scores, test_regression, seed
        self.anchor_generator, self.head = anchor_generator, head
        self.matcher = Matcher(fg_iou, bg_iou, allow_low_quality=True)
        self.box_coder = BoxCoder((1.0, 1.0, 1.0, 1.0))
        self.batch_size_per_image, self.positive_fraction = batch_size_per_image, positive_fraction
        self.pre_nms_top_n = pre_nms_top_n or {"train": 12000, "test": 6000}
        self.post_nms_top_n = post_nms_top_n or {"train": 2000, "test": 300}
        self.nms_thresh, self.min_size = nms_thresh, min_size
        self.ignore_cross_boundary, self.box_weight = ignore_cross_boundary, box_weight

    def forward(
        self, images: ImageBatch, features: Tensor, targets: list[dict] | None, *, top_n: int | None = None
    ) -> tuple[list[Tensor], dict[str, Tensor]]:
        """Proposals per image (at most ``top_n``, default the mode's post-NMS top-N) and, in training, losses."""
        logits, deltas = self.head(features)
        anchors = self.anchor_generator(features.shape[-2:], features.device)
        mode = "train" if self.training else "test"
        proposals = self.filter_proposals(anchors, logits.detach(), deltas.detach(), images.image_sizes, mode,
                                          top_n=top_n)
        losses: dict[str, Tensor] = {}
        if self.training:
            if targets is None:
                raise ValueError("targets are required in training")
            losses = self.losses(anchors, logits, deltas, targets, images.image_sizes)
        return proposals, losses

    def filter_proposals(
        self, anchors: Tensor, logits: Tensor, deltas: Tensor, image_sizes: list[tuple[int, int]], mode: str,
        *, top_n: int | None = None,
    ) -> list[Tensor]:
        """Decode, clip, drop tiny boxes, top-N by score, NMS, top-N again (paper, 3.3)."""
        post_nms = self.post_nms_top_n[mode] if top_n is None else top_n
        test = mode == "test"
        out = []
        for i, size in enumerate(image_sizes):
            scores = logits[i]
            k = min(self.pre_nms_top_n[mode], scores.numel())
            if test and not self.test_scores:  # no cls: a seeded random order of all regions, no ranking, no NMS
                g = torch.Generator().manual_seed(self.seed + i)
                idx = torch.randperm(scores.numel(), generator=g)[:max(k, post_nms)].to(scores.device)
                scores = scores[idx]
            else:
                scores, idx = scores.topk(k)
            regress = not test or self.test_regression
            boxes = self.box_coder.decode(anchors[idx], deltas[i, idx]) if regress else anchors[idx]
            boxes = clip_boxes_to_image(boxes, size)
            keep = remove_small_boxes(boxes, self.min_size)
            boxes, scores = boxes[keep], scores[keep]
            if test and not (self.test_nms and self.test_scores):
                out.append(boxes[:post_nms])
                continue
            # batched_nms with one group is plain NMS (torchvision.ops)
            keep = batched_nms(boxes, scores, torch.zeros_like(scores, dtype=torch.int64), self.nms_thresh)
            out.append(boxes[keep[:post_nms]])
        return out

    def label_anchors(self, anchors: Tensor, target: dict, size: tuple[int, int]) -> tuple[Tensor, Tensor]:
        """Labels ``int64 [M]`` (1 object, 0 background, -1 ignored) and matched gt boxes ``[M, 4]``."""
        gt = target["boxes"]
        inside = torch.ones(anchors.shape[0], dtype=torch.bool, device=anchors.device)
        if self.ignore_cross_boundary:
            h, w = size
            inside = (anchors[:, 0] >= 0) & (anchors[:, 1] >= 0) & (anchors[:, 2] <= w) & (anchors[:, 3] <= h)
            if not inside.any():  # image smaller than every anchor: fall back to all of them
                inside[:] = True
        labels = torch.full((anchors.shape[0],), -1, dtype=torch.int64, device=anchors.device)
        matched = torch.zeros_like(anchors)
        # the best anchor per gt box is searched among the anchors that take part
        lab, box = match_to_gt(self.matcher, anchors[inside], gt, torch.ones_like(target["labels"]))
        labels[inside], matched[inside] = lab, box
        return labels, matched

    def losses(
        self, anchors: Tensor, logits: Tensor, deltas: Tensor, targets: list[dict], image_sizes: list[tuple[int, int]]
    ) -> dict[str, Tensor]:
        """Binary log loss + smooth L1 over the sampled anchors.

        Both terms are divided by the number of sampled anchors (N_cls = 256): with
        ``box_weight = 1`` this is the paper's lambda = 10 with N_reg ~ 2400,
        which it reports as insensitive over 1..100 (Faster R-CNN, 3.1.2).
        """
        cls_losses, box_losses, counts = [], [], 0
        for i, (target, size) in enumerate(zip(targets, image_sizes)):
            labels, matched = self.label_anchors(anchors, target, size)
            pos, neg = sample_balanced(
                labels, batch_size=self.batch_size_per_image, positive_fraction=self.positive_fraction
            )
            sampled = torch.cat((pos, neg))
            cls_losses.append(
                F.binary_cross_entropy_with_logits(logits[i, sampled], (labels[sampled] > 0).float(), reduction="sum")
            )
            box_targets = self.box_coder.encode(anchors[pos], matched[pos])
            # beta = 1/9: sigma = 3 of the reference implementation's RPN loss
            box_losses.append(F.smooth_l1_loss(deltas[i, pos], box_targets, beta=1.0 / 9, reduction="sum"))
            counts += sampled.numel()
        n = max(counts, 1)
        return {
            "loss_rpn_cls": torch.stack(cls_losses).sum() / n,
            "loss_rpn_box": self.box_weight * torch.stack(box_losses).sum() / n,
        }
