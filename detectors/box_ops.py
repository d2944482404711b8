"""Box coder, matcher and sampler: one of each, shared by the RPN, the RoI head and R-CNN.

Shape shorthand: N = boxes to encode/decode, G = ground-truth boxes, P = proposals
(or anchors). Boxes are float32 ``x1, y1, x2, y2`` in absolute pixels throughout.
IoU and NMS come from ``torchvision.ops``; nothing here re-implements them.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor
from torchvision.ops import box_iou

# Larger log-scale deltas would overflow exp(); log(1000/16) as in torchvision / detectron2.
_DELTA_CLAMP = math.log(1000.0 / 16)


class BoxCoder:
    """Encode boxes relative to reference boxes and back (R-CNN appendix C).

    Targets are ``((gx-px)/pw, (gy-py)/ph, log(gw/pw), log(gh/ph))`` divided by
    ``stds``. The RoI head uses the papers' stds ``(0.1, 0.1, 0.2, 0.2)``; the RPN
    uses unit stds as in the Faster R-CNN reference code.
    """

    def __init__(self, stds: tuple[float, float, float, float] = (0.1, 0.1, 0.2, 0.2)) -> None:
        self.stds = tuple(float(s) for s in stds)

    def encode(self, reference: Tensor, gt: Tensor) -> Tensor:
        """Args: reference, gt: ``[N, 4]``. Returns deltas ``[N, 4]``."""
        pw = reference[:, 2] - reference[:, 0]
        ph = reference[:, 3] - reference[:, 1]
        px = reference[:, 0] + 0.5 * pw
        py = reference[:, 1] + 0.5 * ph
        gw = gt[:, 2] - gt[:, 0]
        gh = gt[:, 3] - gt[:, 1]
        gx = gt[:, 0] + 0.5 * gw
        gy = gt[:, 1] + 0.5 * gh
        deltas = torch.stack(
            ((gx - px) / pw, (gy - py) / ph, torch.log(gw / pw), torch.log(gh / ph)), dim=1
        )
        return deltas / deltas.new_tensor(self.stds)

    def decode(self, reference: Tensor, deltas: Tensor) -> Tensor:
        """Args: reference ``[N, 4]``; deltas ``[N, 4 * C]`` (C sets of deltas per box).

        Returns: boxes ``[N, 4 * C]``.
        """
        n = reference.shape[0]
        # (N, 4*C) -> (N, C, 4)
        d = deltas.reshape(n, -1, 4) * deltas.new_tensor(self.stds)
        pw = (reference[:, 2] - reference[:, 0])[:, None]
        ph = (reference[:, 3] - reference[:, 1])[:, None]
        px = reference[:, 0][:, None] + 0.5 * pw
        py = reference[:, 1][:, None] + 0.5 * ph
        cx = d[..., 0] * pw + px
        cy = d[..., 1] * ph + py
        w = torch.exp(d[..., 2].clamp(max=_DELTA_CLAMP)) * pw
        h = torch.exp(d[..., 3].clamp(max=_DELTA_CLAMP)) * ph
        boxes = torch.stack((cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h), dim=2)
        # (N, C, 4) -> (N, 4*C)
        return boxes.reshape(n, -1)


class Matcher:
    """Assign each proposal (or anchor) to its best ground-truth box.

    ``matched >= 0`` is the index of the matched box (foreground); ``BELOW_LOW``
    (-1) marks background and ``BETWEEN`` (-2) marks "ignore". A proposal is
    foreground when its best IoU ``>= high``; background when it lies in
    ``[low_min, low)``; ignored otherwise (including IoU ``< low_min``, which
    Fast R-CNN uses to skip easy negatives with IoU < 0.1).

    ``allow_low_quality``: each gt box's highest-IoU proposal(s) become foreground
    even below ``high`` (Faster R-CNN, 3.1.2: so every box gets an anchor).
    """

    BELOW_LOW = -1
    BETWEEN = -2

    def __init__(self, high: float, low: float, *, low_min: float = 0.0, allow_low_quality: bool = False) -> None:
        if not 0.0 <= low_min <= low <= high:
            raise ValueError(f"need 0 <= low_min <= low <= high, got {low_min}, {low}, {high}")
        self.high, self.low, self.low_min = high, low, low_min
        self.allow_low_quality = allow_low_quality

    def __call__(self, iou: Tensor) -> Tensor:
        """Args: iou ``[G, P]``. Returns matched ``int64 [P]``."""
        if iou.shape[0] == 0:  # no gt: everything is background (if above low_min, i.e. 0)
            fill = self.BELOW_LOW if self.low_min == 0.0 else self.BETWEEN
            return torch.full((iou.shape[1],), fill, dtype=torch.int64, device=iou.device)
        best_iou, matched = iou.max(dim=0)
        out = matched.clone()
        out[best_iou < self.high] = self.BETWEEN
        out[(best_iou < self.low) & (best_iou >= self.low_min)] = self.BELOW_LOW
        if self.allow_low_quality:
            best_per_gt = iou.max(dim=1, keepdim=True).values
            # ties count: every proposal that reaches a gt's best IoU is kept
            gt_idx, prop_idx = torch.nonzero((iou == best_per_gt) & (best_per_gt > 0), as_tuple=True)
            out[prop_idx] = matched[prop_idx]
        return out


def sample_balanced(
    labels: Tensor, *, batch_size: int, positive_fraction: float, generator: torch.Generator | None = None
) -> tuple[Tensor, Tensor]:
    """Sample up to ``batch_size`` indices with at most ``positive_fraction`` positives.

    Args:
        labels: ``int64 [P]``: ``> 0`` positive, ``0`` negative, ``< 0`` ignored.
    Returns:
        ``(pos_idx, neg_idx)``: int64 index tensors; negatives fill what positives leave.
    """
    pos = torch.nonzero(labels > 0).flatten()
    neg = torch.nonzero(labels == 0).flatten()
    num_pos = min(pos.numel(), int(batch_size * positive_fraction))
    num_neg = min(neg.numel(), batch_size - num_pos)
    pos = pos[torch.randperm(pos.numel(), generator=generator, device="cpu")[:num_pos].to(pos.device)]
    neg = neg[torch.randperm(neg.numel(), generator=generator, device="cpu")[:num_neg].to(neg.device)]
    return pos, neg


def match_to_gt(
    matcher: Matcher, proposals: Tensor, gt_boxes: Tensor, gt_labels: Tensor
) -> tuple[Tensor, Tensor]:
    """Label proposals by their matched gt.

    Returns:
        labels ``int64 [P]`` (class of the matched box; 0 background; -1 ignored)
        and matched gt boxes ``[P, 4]`` (zeros where unmatched).
    """
    matched = matcher(box_iou(gt_boxes, proposals))
    fg = matched >= 0
    labels = torch.full_like(matched, -1)
    labels[matched == Matcher.BELOW_LOW] = 0
    labels[fg] = gt_labels[matched[fg]]
    boxes = torch.zeros_like(proposals)
    boxes[fg] = gt_boxes[matched[fg]]
    return labels, boxes
