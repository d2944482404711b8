"""Training and testing loops shared by every detector with the torchvision interface.

``train`` runs SGD with warm-up and step decay, guards against non-finite losses,
shows a progress bar and writes an atomic checkpoint after every epoch.
``test`` runs one image at a time (so per-image times are per image), times each
stage, maps detections back to the original image frame and evaluates them.
"""
from __future__ import annotations

import math
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from harness.config import TestConfig, TrainConfig
from harness.data.base import DetectionDataset, collate, training_target
from harness.timing import StageTimer, Stopwatch

Progress = Callable[[str, int], Any]  # (description, total) -> object with .advance(n) / .close()


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss."""

    def __init__(self, step: int, losses: dict[str, float]) -> None:
        bad = [k for k, v in losses.items() if not math.isfinite(v)]
        super().__init__(
            f"non-finite loss at step {step}: {', '.join(bad)} = "
            + ", ".join(f"{losses[k]}" for k in bad)
            + " (try a lower train.lr, or train.grad_clip)"
        )
        self.step, self.terms = step, bad


def seed_everything(seed: int) -> torch.Generator:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, total_iters: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Linear warm-up, then ``lr_gamma`` at each fraction of ``lr_steps`` (per iteration)."""
    milestones = [int(f * total_iters) for f in cfg.lr_steps]

    def factor(it: int) -> float:
        warm = min(1.0, (it + 1) / cfg.warmup_iters) if cfg.warmup_iters > 0 else 1.0
        return warm * cfg.lr_gamma ** sum(it >= m for m in milestones)

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def save_checkpoint(path: Path, state: dict[str, Any]) -> int:
    """Write atomically (temp file in the same folder, then rename); returns bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)
    return path.stat().st_size


@dataclass
class TrainResult:
    seconds: float = 0.0
    iterations: int = 0
    epochs_done: int = 0
    last_losses: dict[str, float] = field(default_factory=dict)
    checkpoint: Path | None = None


def _to_device(targets: list[dict], device: torch.device) -> list[dict]:
    return [{k: (v.to(device) if torch.is_tensor(v) else v) for k, v in t.items()} for t in targets]


def train(
    model: nn.Module,
    dataset: DetectionDataset,
    cfg: TrainConfig,
    *,
    device: torch.device,
    seed: int,
    workers: int = 0,
    checkpoint_path: Path | None = None,
    progress: Progress | None = None,
) -> TrainResult:
    """Train ``model`` on ``dataset``; returns time, iterations and the last losses."""
    generator = seed_everything(seed)
    loader = DataLoader(
        dataset,
        batch_size=cfg.images_per_batch,
        shuffle=True,
        generator=generator,
        collate_fn=collate,
        num_workers=workers,
        drop_last=len(dataset) >= cfg.images_per_batch,
    )
    if len(loader) == 0:
        raise ValueError("the training split has no images")
    total = cfg.epochs * len(loader)
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg, total)
    result = TrainResult()
    bar = progress("train", total) if progress else None
    model.to(device).train()
    try:
        with Stopwatch(device) as watch:
            for epoch in range(cfg.epochs):
                for images, targets in loader:
                    images = [im.to(device, non_blocking=True) for im in images]
                    targets = _to_device([training_target(t) for t in targets], device)
                    losses = model(images, targets)
                    values = {k: float(v.detach()) for k, v in losses.items()}
                    if not all(math.isfinite(v) for v in values.values()):
                        raise NonFiniteLossError(result.iterations, values)
                    optimizer.zero_grad(set_to_none=True)
                    sum(losses.values()).backward()
                    if cfg.grad_clip:
                        nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                    optimizer.step()
                    scheduler.step()
                    result.iterations += 1
                    result.last_losses = values
                    if bar:
                        bar.advance(1, **{"loss": sum(values.values())})
                result.epochs_done = epoch + 1
                if checkpoint_path is not None:
                    save_checkpoint(
                        checkpoint_path,
                        {
                            "model": model.state_dict(),
                            "optimizer": optimizer.state_dict(),
                            "scheduler": scheduler.state_dict(),
                            "epoch": epoch + 1,
                            "iterations": result.iterations,
                            "torch_rng": torch.get_rng_state(),
                        },
                    )
                    result.checkpoint = checkpoint_path
    finally:
        if bar:
            bar.close()
        result.seconds = watch.seconds if "watch" in locals() and watch.seconds else result.seconds
    return result


@torch.no_grad()
def predict(
    model: nn.Module,
    dataset: DetectionDataset,
    cfg: TestConfig,
    *,
    device: torch.device,
    progress: Progress | None = None,
) -> tuple[list[dict[str, torch.Tensor]], StageTimer]:
    """Detections for every test image, in each image's original frame, and stage times."""
    model.to(device).eval()
    timer = StageTimer(device)
    n = len(dataset) if cfg.max_images is None else min(cfg.max_images, len(dataset))
    if n == 0:
        raise ValueError("the test split has no images")
    # warm-up: allocator, kernels and caches settle before timing starts
    timer.warmup = True
    for i in range(min(cfg.warmup_images, n)):
        image, target = dataset[i]
        with timer.item():
            model([image.to(device)], _inputs_for_eval(target, device), timer=timer)
    timer.warmup = False
    predictions = []
    bar = progress("test", n) if progress else None
    for i in range(n):
        image, target = dataset[i]
        with timer.item():
            (out,) = model([image.to(device)], _inputs_for_eval(target, device), timer=timer)
        predictions.append(to_original_frame(out, target))
        if bar:
            bar.advance(1)
    if bar:
        bar.close()
    return predictions, timer


def _inputs_for_eval(target: dict, device: torch.device) -> list[dict] | None:
    """Only precomputed proposals reach the model at test time, never ground truth."""
    if "proposals" in target:
        return [{"proposals": target["proposals"].to(device)}]
    return None


def to_original_frame(pred: dict[str, torch.Tensor], target: dict) -> dict[str, torch.Tensor]:
    """Rescale boxes from the resized image the model saw to the image on disk."""
    h, w = (int(x) for x in target["size"])
    oh, ow = (int(x) for x in target["orig_size"])
    scale = torch.tensor([ow / w, oh / h, ow / w, oh / h])
    return {
        "boxes": pred["boxes"].detach().cpu().float() * scale,
        "labels": pred["labels"].detach().cpu(),
        "scores": pred["scores"].detach().cpu().float(),
    }


@torch.no_grad()
def proposal_recall_curve(
    model: nn.Module, dataset: DetectionDataset, counts: tuple[int, ...], *, device: torch.device, max_images: int | None
) -> dict[str, list]:
    """Recall of gt boxes at IoU 0.5 and 0.7 by the first n proposals, n in ``counts``.

    An RPN is asked for ``max(counts)`` proposals (its test-time top-N is raised for
    this pass only), so selective search and the RPN are compared at equal n.
    """
    from detectors.rpn import proposal_recall

    source = model.proposal_source
    saved = dict(getattr(source, "post_nms_top_n", {}))
    if saved:
        source.post_nms_top_n["test"] = max(counts)
    model.to(device).eval()
    props, gts = [], []
    try:
        n = len(dataset) if max_images is None else min(max_images, len(dataset))
        for i in range(n):
            image, target = dataset[i]
            (p,) = model.propose([image.to(device)], _inputs_for_eval(target, device))
            props.append(p.cpu())
            gts.append(training_target(target)["boxes"])
    finally:
        if saved:
            source.post_nms_top_n.update(saved)
    return {
        "num_proposals": list(counts),
        "recall@0.5": proposal_recall(props, gts, list(counts), 0.5),
        "recall@0.7": proposal_recall(props, gts, list(counts), 0.7),
        "mean_proposals": float(np.mean([p.shape[0] for p in props])) if props else 0.0,
    }
