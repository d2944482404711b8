"""Training guards (issue 9, point 3): a non-finite loss stops the run cleanly.

It names the step and the loss term, keeps the last good checkpoint (never a NaN
model), records ``status: failed`` with the reason and exits 1. Gradient
clipping is a config key (``train.grad_clip``); a non-finite gradient norm and
non-finite weights are caught before they reach a checkpoint.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from dirty_data import TINY_RUN
from torch import nn
from typer.testing import CliRunner

import detectors.two_stage as two_stage
from harness.cli import app
from harness.config import TrainConfig, build_config
from harness.data import make_target
from harness.run.checkpoint import CHECKPOINT_FILE, load_checkpoint
from harness.train.engine import (
    NonFiniteLossError,
    _check_finite_parameters,
    _train_step,
    make_optimizer,
    make_scheduler,
)

runner = CliRunner()


def test_nan_loss_at_step_k_stops_keeps_checkpoint_records_failed_exit_1(tmp_path: Path, monkeypatch):
    real_losses, calls = two_stage.fast_rcnn_losses, []

    def nan_at_step_4(*args, **kwargs):  # called once per training step
        losses = real_losses(*args, **kwargs)
        if len(calls) == 4:  # the second step of epoch 2 (3 steps per epoch)
            losses["loss_cls"] = losses["loss_cls"] * float("nan")
        calls.append(1)
        return losses

    monkeypatch.setattr(two_stage, "fast_rcnn_losses", nan_at_step_4)
    result = runner.invoke(app, ["run", "--results", str(tmp_path), *TINY_RUN, "--epochs", "2"])
    text = " ".join(result.output.split())
    assert result.exit_code == 1, result.output
    assert "non-finite loss at step 4: loss_cls = nan" in text and "last good checkpoint is kept" in text
    assert "Traceback" not in text
    (record,) = [json.loads(line) for line in (tmp_path / "runs.jsonl").read_text().splitlines()]
    assert record["status"] == "failed"
    assert "step 4" in record["reason"] and "loss_cls" in record["reason"]
    state = load_checkpoint(tmp_path / record["run_id"] / CHECKPOINT_FILE)
    assert state["epoch"] == 1 and state["iterations"] == 3  # epoch 1's, not overwritten
    assert all(v.isfinite().all() for v in state["model"].values() if v.is_floating_point())


def test_grad_clip_is_a_config_key():
    assert build_config(overrides={"train.grad_clip": "5"}).train.grad_clip == 5.0
    assert build_config(overrides={"train.grad_clip": "none"}).train.grad_clip is None


class _SqrtAtZero(nn.Module):
    """Finite loss (0) whose gradient is not: d sqrt(|w|)/dw at w = 0 is inf * 0 = nan."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, images: list, targets: list) -> dict[str, torch.Tensor]:
        return {"loss_x": torch.sqrt(self.w.abs()).sum()}


def test_non_finite_gradient_stops_before_the_weights_change():
    model, cfg = _SqrtAtZero(), TrainConfig(grad_clip=10.0)
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg, 10)
    batch = ([torch.zeros(3, 8, 8)], [make_target([[0, 0, 4, 4]], [1], image_id=0, orig_size=(8, 8))])
    with pytest.raises(NonFiniteLossError, match="non-finite gradient at step 7: grad_norm"):
        _train_step(model, optimizer, scheduler, batch, device=torch.device("cpu"), grad_clip=10.0, step=7)
    assert torch.equal(model.w.detach(), torch.zeros(1))


def test_non_finite_weights_are_never_checkpointed():
    model = nn.Linear(2, 2)
    _check_finite_parameters(model, 3)  # finite: passes
    with torch.no_grad():
        model.bias[0] = float("inf")
    with pytest.raises(NonFiniteLossError, match="non-finite parameter at step 3: bias"):
        _check_finite_parameters(model, 3)
