"""The proposal-source slot shared by the three detectors.

A proposal source maps ``(images, features, targets)`` to per-image proposal
boxes plus its own losses (empty when it does not learn). The Region Proposal
Network is one implementation; Fast R-CNN and R-CNN plug in selective search
(or any external method) through :class:`PrecomputedProposals`, which reads the
``proposals`` key that the data layer moved together with the image.

Shape shorthand: B = images in the batch, P_i = proposals of image i.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor, nn
from torchvision.ops import clip_boxes_to_image, remove_small_boxes


@dataclass
class ImageBatch:
    """Images normalised and zero-padded to one tensor.

    Attributes:
        tensors: ``float32 [B, 3, Hp, Wp]`` (Hp, Wp multiples of the stride).
        image_sizes: ``(h, w)`` of each image before padding; boxes live in this frame.
    """

    tensors: Tensor
    image_sizes: list[tuple[int, int]]


class ProposalSource(Protocol):
    """``source(images, features, targets) -> (proposals, losses)``.

    Args:
        images: the batch.
        features: ``[B, C, Hf, Wf]`` shared feature map (stride 16).
        targets: training targets, or ``None`` in evaluation.
    Returns:
        proposals: list of B ``float32 [P_i, 4]`` boxes (detached: Faster R-CNN's
            approximate joint training treats proposal coordinates as constants).
        losses: dict of scalar losses (e.g. ``loss_rpn_cls``, ``loss_rpn_box``).
    """

    def __call__(
        self, images: ImageBatch, features: Tensor, targets: list[dict] | None
    ) -> tuple[list[Tensor], dict[str, Tensor]]: ...


class PrecomputedProposals(nn.Module):
    """Proposals computed outside the network (selective search, EdgeBoxes, MCG, ...).

    Reads ``target["proposals"]`` of each image, already in the image frame the
    model sees (the data layer's transforms resize and flip them with the image).
    In evaluation the caller passes targets carrying only ``proposals``.

    Args:
        top_n: keep at most this many per image (the order given is kept: sources
            list their boxes best first).
        min_size: drop boxes narrower or shorter than this many pixels.
    """

    def __init__(self, *, top_n: int = 2000, min_size: float = 1.0) -> None:
        super().__init__()
        self.top_n, self.min_size = top_n, min_size

    def forward(
        self, images: ImageBatch, features: Tensor, targets: list[dict] | None, *, top_n: int | None = None
    ) -> tuple[list[Tensor], dict[str, Tensor]]:
        """The targets' ``proposals``, clipped, small boxes dropped, the first ``top_n`` (default: ``self.top_n``)."""
        limit = self.top_n if top_n is None else top_n
        if targets is None or any("proposals" not in t for t in targets):
            raise ValueError("precomputed proposals need target['proposals'] for every image")
        out = []
        for target, size in zip(targets, images.image_sizes):
            boxes = clip_boxes_to_image(target["proposals"].to(features.device, torch.float32), size)
            boxes = boxes[remove_small_boxes(boxes, self.min_size)][:limit]
            out.append(boxes)
        return out, {}
