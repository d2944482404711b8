"""The training log: loss terms, learning rate and throughput every N iterations.

One JSON object per line of ``results/<run_id>/train_log.jsonl``::

    {"step": 20, "stage": "train", "epoch": 1, "lr": 0.02, "loss": 1.93,
     "losses": {"loss_rpn_cls": 0.6, ...}, "images_per_s": 7.9, "seconds": 5.1}

``step`` counts optimiser steps over the whole run: a scheme with several stages
(alternating training's four steps, stage-wise training's two) continues the count
from one stage to the next and names the stage. An entry is written every
``train.log_every`` steps and at the end of every epoch (where checkpoints are
written), with the losses of that step (not a window mean), so a resumed run
logs exactly the steps and losses an uninterrupted one would. Resuming keeps the
entries up to the checkpoint's step and drops any later ones (written after the
checkpoint, before the stop), so no step appears twice.

With a TensorBoard folder (``harness run --tensorboard DIR``) the same values go
to ``DIR/<run_id>`` as scalars through :mod:`torch.utils.tensorboard` (the
optional ``tensorboard`` package: ``pip install 'rcnn-harness[tensorboard]'``).
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from harness.config import ConfigError
from harness.run.storage import storage_error

TRAIN_LOG_FILE = "train_log.jsonl"
TENSORBOARD_HINT = ("--tensorboard needs the optional tensorboard package: "
                    "pip install 'rcnn-harness[tensorboard]' (or: pip install tensorboard)")


def tensorboard_writer_class() -> Any:
    """``torch.utils.tensorboard.SummaryWriter``; a :class:`ConfigError` saying how to install it when missing."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:  # torch raises ImportError itself when the tensorboard package is absent
        raise ConfigError(TENSORBOARD_HINT) from None
    return SummaryWriter


def read_train_log(path: Path) -> list[dict[str, Any]]:
    """The entries of a training log; a torn last line (a killed process) is skipped."""
    entries = []
    if not Path(path).is_file():
        return entries
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(entry, dict) and isinstance(entry.get("step"), int):
            entries.append(entry)
    return entries


class TrainLog:
    """Writes the training log of one run (see the module docstring).

    Args:
        path: the JSONL file; created (emptied) for a new run.
        every: log every ``every`` steps (and at each epoch's end).
        resume_step: a resumed run's checkpoint step: entries up to it are kept, later ones dropped.
        tensorboard: a folder for TensorBoard scalars (``None``: none).
    """

    def __init__(self, path: Path, every: int, *, resume_step: int | None = None,
                 tensorboard: Path | None = None) -> None:
        self.path, self.every = Path(path), max(1, int(every))
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept = [e for e in read_train_log(self.path) if e["step"] <= resume_step] if resume_step is not None else []
        self.path.write_text("".join(json.dumps(e) + "\n" for e in kept), encoding="utf-8")
        self.step, self.offset = int(resume_step or 0), 0  # a resumed loop counts on from the checkpoint's step
        self.stage_name, self._stages = "train", 0
        self.writer = tensorboard_writer_class()(log_dir=str(tensorboard)) if tensorboard is not None else None
        self._mark_time, self._mark_images = time.perf_counter(), 0

    def stage(self, name: str) -> TrainLog:
        """Start a stage of a multi-stage scheme: its steps continue the run's count (the first stage's
        loop counts from 0, or from the checkpoint's step when resumed)."""
        if self._stages:
            self.offset = self.step
        self.stage_name, self._stages = name, self._stages + 1
        self._mark_time, self._mark_images = time.perf_counter(), 0
        return self

    def __call__(self, iteration: int, losses: dict[str, float], *, lr: float, images: int, epoch: int,
                 epoch_end: bool = False) -> None:
        """After optimiser step ``iteration`` (1-based, within the current stage) of ``images`` images."""
        self.step = self.offset + iteration
        self._mark_images += images
        if not (epoch_end or iteration % self.every == 0):
            return
        now = time.perf_counter()
        seconds = now - self._mark_time
        entry = {
            "step": self.step,
            "stage": self.stage_name,
            "epoch": epoch,
            "lr": lr,
            "loss": sum(losses.values()),
            "losses": dict(losses),
            "images_per_s": self._mark_images / seconds if seconds > 0 else None,
            "seconds": seconds,
        }
        try:
            with self.path.open("a", encoding="utf-8") as f:
                f.write(json.dumps(entry) + "\n")
        except OSError as err:  # a full disk stops the run with the same one-line message as a checkpoint
            raise storage_error(self.path, "training log", err) from None
        if self.writer is not None:
            self.writer.add_scalar("loss/total", entry["loss"], self.step)
            for key, value in losses.items():
                self.writer.add_scalar(f"loss/{key}", value, self.step)
            self.writer.add_scalar("lr", lr, self.step)
            if entry["images_per_s"] is not None:
                self.writer.add_scalar("images_per_s", entry["images_per_s"], self.step)
        self._mark_time, self._mark_images = now, 0

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
