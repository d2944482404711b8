"""Fast R-CNN stage-wise training (Fast R-CNN, section 5.1, Table 6 "stage-wise").

The ablation against multi-task training: first the network is trained for
classification alone (``L_cls``; the box regressor gets no gradient), then the
box regressor (``bbox_pred``) alone is trained with ``L_loc`` while everything
else stays frozen, batch-norm statistics included. Testing then uses the
regressed boxes, as the multi-task model does. Both stages reuse the one
training loop (:func:`harness.train.engine.train`) through
:class:`harness.train.parts.LossSubset`.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import torch

from detectors.two_stage import TwoStageDetector
from harness.config import TrainConfig
from harness.train.engine import TrainResult, train
from harness.train.parts import LossSubset, set_trainable


@dataclass
class StagewiseResult:
    summary: TrainResult
    stage_seconds: dict[str, float] = field(default_factory=dict)
    stage_iterations: dict[str, int] = field(default_factory=dict)


def box_stage_config(cfg: TrainConfig) -> TrainConfig:
    """Stage 2's schedule: ``train.box_stage_epochs`` (default: the whole schedule again)."""
    return replace(cfg, epochs=cfg.box_stage_epochs or cfg.epochs, scheme="joint")


def fit_stagewise(
    model: TwoStageDetector,
    dataset: Any,
    cfg: TrainConfig,
    *,
    device: torch.device,
    seed: int,
    workers: int = 0,
    progress: Any = None,
    log: Any = None,
) -> StagewiseResult:
    """Classification first, then the box regressor alone on the frozen network (no checkpoints)."""
    if not model.box_regression:
        raise ValueError("stage-wise training adds box regression after: build the model without model.cls_only")
    times, iterations = {}, {}
    # stage 1: L_cls alone (box regression off in training; the regressor gets no gradient)
    model.box_regression = False
    first = train(LossSubset(model, ("loss_cls",)), dataset, cfg, device=device, seed=seed, workers=workers,
                  progress=progress, log=log.stage("stage1_classification") if log is not None else None)
    times["stage1_classification"], iterations["stage1_classification"] = first.seconds, first.iterations
    # stage 2: L_loc trains bbox_pred alone; the rest is frozen (eval mode where nothing learns)
    model.box_regression = True
    trainable = {name: p.requires_grad for name, p in model.named_parameters()}
    set_trainable(model, False)
    set_trainable(model.roi_head.bbox_pred, True)
    try:
        second = train(LossSubset(model, ("loss_box",)), dataset, box_stage_config(cfg), device=device,
                       seed=seed + 1, workers=workers, progress=progress,
                       log=log.stage("stage2_box_regression") if log is not None else None)
    finally:
        for name, p in model.named_parameters():
            p.requires_grad_(trainable[name])
    times["stage2_box_regression"], iterations["stage2_box_regression"] = second.seconds, second.iterations
    summary = TrainResult(seconds=first.seconds + second.seconds, iterations=first.iterations + second.iterations,
                          epochs_done=first.epochs_done, last_losses={**first.last_losses, **second.last_losses})
    return StagewiseResult(summary, times, iterations)
