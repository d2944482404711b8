"""FLOPs per image per stage, counted with ``torch.utils.flop_counter``.

The detectors already wrap each stage in ``timer(stage)``; a :class:`FlopStages`
passed in the timer's place counts the FLOPs of each stage instead of its time,
so every detector with that hook gets a per-stage FLOP split for free. Ops with
no registered formula (NMS, RoI pooling, sorting) count as 0: the figures are the
convolutions and dense matrix products, which dominate. RoI Align on the CPU is a
sparse x dense product (``detectors.roi_heads``); it counts as 0 like every RoI
pooling, so the figures do not depend on the pooler (a dense formula would count
its zeros: 10x the backbone for a small one).
"""
from __future__ import annotations

import contextlib
from collections import defaultdict
from collections.abc import Iterator

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode, mm_flop

aten = torch.ops.aten


def _dense_mm_flop(a: torch.Tensor, b: torch.Tensor, *args, out_val=None, **kwargs) -> int:
    if a.layout != torch.strided or b.layout != torch.strided:
        return 0  # a sparse operand: RoI pooling, not counted
    return mm_flop(a.shape, b.shape)


_dense_mm_flop._get_raw = True  # FlopCounterMode passes the tensors, not their shapes


class FlopStages:
    """``with counter("backbone"): ...`` adds that block's FLOPs to ``counter.flops["backbone"]``."""

    def __init__(self) -> None:
        self.flops: dict[str, int] = defaultdict(int)

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        with FlopCounterMode(display=False, custom_mapping={aten.mm: _dense_mm_flop}) as mode:
            yield
        self.flops[stage] += int(mode.get_total_flops())


@torch.no_grad()
def count_stage_flops(model: nn.Module, image: torch.Tensor, inputs: list[dict] | None = None) -> dict[str, int]:
    """FLOPs of one eval forward of ``model`` on ``image``, split by stage, plus ``total``."""
    counter = FlopStages()
    was_training = model.training
    model.eval()
    try:
        model([image], inputs, timer=counter)
    finally:
        model.train(was_training)
    flops = dict(counter.flops)
    flops["total"] = sum(flops.values())
    return flops
