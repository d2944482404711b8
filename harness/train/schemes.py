"""Which function trains which detector by which scheme: one table, one result type.

``FIT[(detector, scheme)]`` is the fit function; the runner looks it up and never
names a detector. Every fit function takes a :class:`FitJob` and returns a
:class:`Fitted`, which writes its own part of the run record.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from harness.config import ConfigError, RunConfig, to_dict
from harness.data.base import DetectionDataset
from harness.train.alternating import fit_alternating
from harness.train.engine import TrainResult, train
from harness.train.rcnn import train_rcnn
from harness.train.stagewise import fit_stagewise


@dataclass
class FitJob:
    """What a fit function needs: the config, a model built for it, the data and where to checkpoint."""

    cfg: RunConfig
    model: torch.nn.Module
    build: Callable[[], torch.nn.Module]  # a fresh model of the same config (alternating: a second backbone)
    train_set: DetectionDataset
    device: torch.device
    progress: Any = None
    resume: dict[str, Any] | None = None  # the checkpoint state to continue from
    checkpoint: Path | None = None
    log: Any = None  # the run's training log (harness.train.train_log.TrainLog), every scheme writes it

    def common(self) -> dict[str, Any]:
        return {"device": self.device, "seed": self.cfg.seed, "workers": self.cfg.data.workers,
                "progress": self.progress, "log": self.log}


@dataclass
class Fitted:
    """What training produced: the model to test, the loop's result, stage times, the unshared system."""

    model: torch.nn.Module
    trained: TrainResult
    stage_seconds: dict[str, float] | None = None
    unshared: torch.nn.Module | None = None  # alternating: the step-2 system (Faster R-CNN Table 3)

    def record_into(self, record: dict[str, Any]) -> None:
        """Training time, iterations, epochs, stage times and last losses (and what the scheme adds)."""
        t = self.trained
        record["timing"] = {"train_s": t.seconds, "train_iters": t.iterations, "epochs": t.epochs_done}
        if self.stage_seconds is not None:
            record["timing"]["train_stages"] = self.stage_seconds
        record["final_losses"] = t.last_losses
        t.record_into(record)


def _joint(job: FitJob) -> Fitted:
    trained = train(job.model, job.train_set, job.cfg.train, checkpoint_path=job.checkpoint, resume=job.resume,
                    run_config=to_dict(job.cfg), **job.common())
    return Fitted(job.model, trained)


def _rcnn(job: FitJob) -> Fitted:  # R-CNN: fine-tune, features, SVMs, box regression (R-CNN 2.3)
    trained = train_rcnn(job.model, job.train_set, job.cfg, device=job.device, workers=job.cfg.data.workers,
                         checkpoint_path=job.checkpoint, progress=job.progress, resume=job.resume, log=job.log)
    return Fitted(job.model, trained)


def _alternating(job: FitJob) -> Fitted:  # Faster R-CNN 3.2: four steps, two backbones until step 3
    result, trained = fit_alternating(job.build, job.train_set, job.cfg.train, **job.common())
    return Fitted(result.model, trained, result.stage_seconds, result.unshared)


def _stagewise(job: FitJob) -> Fitted:  # Fast R-CNN 5.1: classification, then box regression alone
    staged = fit_stagewise(job.model, job.train_set, job.cfg.train, **job.common())
    return Fitted(job.model, staged.summary, staged.stage_seconds)


FIT: dict[tuple[str, str], Callable[[FitJob], Fitted]] = {
    ("faster", "joint"): _joint,
    ("fast", "joint"): _joint,
    ("rcnn", "joint"): _rcnn,
    ("faster", "alternating"): _alternating,
    ("fast", "stagewise"): _stagewise,
}
RESUMABLE_SCHEMES = ("joint",)  # the other schemes keep no per-epoch checkpoint


def fit_function(cfg: RunConfig, *, resuming: bool = False) -> Callable[[FitJob], Fitted]:
    """The fit function of ``cfg``; a clear :class:`ConfigError` for a pair that does not exist."""
    fit = FIT.get((cfg.detector, cfg.train.scheme))
    if fit is None:
        pairs = ", ".join(f"{d}+{s}" for d, s in FIT)
        raise ConfigError(f"train.scheme={cfg.train.scheme} is not available for --detector {cfg.detector} "
                          f"(available: {pairs})")
    if resuming and cfg.train.scheme not in RESUMABLE_SCHEMES:
        raise ConfigError(f"a train.scheme={cfg.train.scheme} run cannot be resumed: start it again")
    return fit


def check_distributed(cfg: RunConfig) -> None:
    """Several processes (torchrun) train only through the shared loop, the joint scheme."""
    if FIT.get((cfg.detector, cfg.train.scheme)) is not _joint:
        raise ConfigError("torchrun (several processes) trains Fast and Faster R-CNN with train.scheme=joint; "
                          "run R-CNN and alternating training in one process")
