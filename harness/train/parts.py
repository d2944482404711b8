"""Views of a detector for training a part of it: a subset of its loss terms, frozen parameters.

Used by the training schemes that train one part at a time: Faster R-CNN's 4-step
alternating training and Fast R-CNN's stage-wise training.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import Tensor, nn

from detectors.two_stage import no_timer


class LossSubset(nn.Module):
    """``model`` in training, returning only the loss terms of ``terms``.

    Parts whose parameters are all frozen stay in eval mode, so their batch-norm
    statistics do not drift either: frozen means frozen (section 3.2, steps 3-4).
    """

    def __init__(self, model: nn.Module, terms: tuple[str, ...]) -> None:
        super().__init__()
        self.model, self.terms = model, terms

    def train(self, mode: bool = True) -> "LossSubset":
        super().train(mode)
        # the box head on its own too: stage-wise training freezes it while bbox_pred learns
        for part in (self.model.body, self.model.roi_head, self.model.roi_head.box_head, self.model.proposal_source):
            if mode and not any(p.requires_grad for p in part.parameters()):
                part.eval()
        return self

    def forward(self, images: list[Tensor], targets: list[dict] | None = None, *, timer: Callable = no_timer) -> Any:
        out = self.model(images, targets, timer=timer)
        if self.training:
            return {k: v for k, v in out.items() if k in self.terms}
        return out


def set_trainable(module: nn.Module, trainable: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(trainable)
