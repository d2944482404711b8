"""Training and testing loops shared by every detector with the torchvision interface.

``train`` runs SGD with warm-up and step decay, guards against non-finite losses,
shows a progress bar and writes an atomic checkpoint after every epoch.
``test`` runs one image at a time (so per-image times are per image), times each
stage, maps detections back to the original image frame and evaluates them.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler

from harness.config import ConfigError, TestConfig, TrainConfig
from harness.data.base import DetectionDataset, collate, training_target
from harness.data.errors import DatasetError, from_worker
from harness.evaluation.timing import StageTimer, Stopwatch
from harness.run import distributed
from harness.run.checkpoint import CHECKPOINT_FORMAT, save_checkpoint
from harness.run.seeding import (
    epoch_generator,
    rng_state,
    seed_everything,
    set_rng_state,
)

Progress = Callable[[str, int], Any]  # (description, total) -> object with .advance(n) / .close()
# (iteration, losses, *, lr, images, epoch, epoch_end) after each step: the training log (harness.train.train_log)
StepLog = Callable[..., None]


class NonFiniteLossError(RuntimeError):
    """Training produced a NaN or infinite loss."""

    def __init__(self, step: int, losses: dict[str, float], what: str = "loss") -> None:
        bad = [k for k, v in losses.items() if not math.isfinite(v)]
        super().__init__(
            f"non-finite {what} at step {step}: {', '.join(bad)} = "
            + ", ".join(f"{losses[k]}" for k in bad)
            + " (try a lower train.lr, or train.grad_clip)"
        )
        self.step, self.terms = step, bad


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


@dataclass
class TrainResult:
    seconds: float = 0.0
    iterations: int = 0
    epochs_done: int = 0
    last_losses: dict[str, float] = field(default_factory=dict)
    checkpoint: Path | None = None
    resumed_from_epoch: int | None = None

    def record_into(self, record: dict[str, Any]) -> None:
        """What a training scheme adds to the run record beyond time, iterations and losses (none here)."""


def epoch_loader(
    dataset: DetectionDataset, cfg: TrainConfig, *, seed: int, epoch: int, workers: int = 0
) -> DataLoader:
    """The loader of one epoch; its shuffle order, worker seeds and flips derive from ``(seed, epoch)``.

    A fresh loader with fresh generators per epoch (rather than one generator
    consumed epoch after epoch) lets a resumed run start at any epoch and draw
    exactly what an uninterrupted run would have drawn there. Under torchrun each
    rank draws its own shard of the epoch (``DistributedSampler``, same seed and epoch).
    """
    dataset.set_epoch(epoch)
    ranks = distributed.current()
    if ranks.active:
        sampler = DistributedSampler(dataset, num_replicas=ranks.world_size, rank=ranks.rank, shuffle=True,
                                     seed=seed, drop_last=True)
        sampler.set_epoch(epoch)
    else:
        sampler = RandomSampler(dataset, generator=epoch_generator(seed, epoch, "order"))
    return DataLoader(
        dataset,
        batch_size=cfg.images_per_batch,
        sampler=sampler,
        generator=epoch_generator(seed, epoch, "workers"),
        collate_fn=collate,
        num_workers=workers,
        drop_last=len(sampler) >= cfg.images_per_batch,
    )


def iterations_per_epoch(n: int, per_batch: int) -> int:
    """Steps per epoch on this rank: full batches of its shard (one short batch when none is full)."""
    shard = n // distributed.current().world_size
    return shard // per_batch if shard >= per_batch else int(shard > 0)


def autocast(device: torch.device, enabled: bool) -> torch.autocast:
    """Mixed precision: float16 on CUDA (with loss scaling in training), bfloat16 on the CPU."""
    return torch.autocast(device.type, dtype=torch.float16 if device.type == "cuda" else torch.bfloat16,
                          enabled=enabled)


def _batches(loader: DataLoader) -> Iterator[tuple[list[torch.Tensor], list[dict]]]:
    """Iterate ``loader``; a DatasetError raised in a worker keeps its one-line message."""
    try:
        yield from loader
    except DatasetError as err:
        raise from_worker(err) from None


def _train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    batch: tuple[list[torch.Tensor], list[dict]],
    *,
    device: torch.device,
    grad_clip: float | None,
    step: int,
    amp: bool = False,
    scaler: torch.amp.GradScaler | None = None,
) -> dict[str, float]:
    """One SGD step; returns the loss terms.

    Raises NonFiniteLossError *before* the parameters change when a loss term or
    (with clipping) the gradient norm is not finite, so they stay the last good ones.
    Under torchrun every rank raises when any rank saw a non-finite loss. With a
    loss ``scaler`` (AMP on CUDA) an overflowing gradient is the scaler's to skip.
    """
    images = [im.to(device, non_blocking=True) for im in batch[0]]
    targets = targets_to_device([training_target(t) for t in batch[1]], device)
    with autocast(device, amp):
        losses = model(images, targets)
    values = {k: float(v.detach()) for k, v in losses.items()}
    finite = all(math.isfinite(v) for v in values.values())
    if not distributed.all_true(finite, device):
        raise NonFiniteLossError(step, values if not finite else {"loss (another rank)": math.nan})
    optimizer.zero_grad(set_to_none=True)
    total = sum(losses.values())
    (scaler.scale(total) if scaler is not None else total).backward()
    if grad_clip:
        if scaler is not None:
            scaler.unscale_(optimizer)
        norm = float(nn.utils.clip_grad_norm_(model.parameters(), grad_clip))
        if not math.isfinite(norm) and scaler is None:
            raise NonFiniteLossError(step, {"grad_norm": norm}, what="gradient")
    if scaler is not None:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    scheduler.step()
    return values


def _check_finite_parameters(model: nn.Module, step: int) -> None:
    """Refuse to checkpoint a model with NaN/inf weights (without clipping nothing else would catch it)."""
    bad = {k: float("nan") for k, v in model.state_dict().items() if v.is_floating_point() and not v.isfinite().all()}
    if bad:
        raise NonFiniteLossError(step, dict(list(bad.items())[:3]), what="parameter")


def _restore(
    state: dict[str, Any],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    result: TrainResult,
    scaler: torch.amp.GradScaler | None = None,
) -> None:
    """Put a checkpoint's training state back; the RNG last, right before the next batch is drawn.

    Raises:
        ConfigError: the checkpoint was written by a different number of torchrun
            processes (steps per epoch, and so the schedule, would change).
    """
    world = distributed.current().world_size
    if int(state.get("world_size", 1)) != world:
        raise ConfigError(f"the checkpoint was trained by {state.get('world_size', 1)} process(es); resume it with "
                          f"the same number (torchrun --nproc_per_node), not {world}")
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])  # moves the momentum buffers to the parameters' device
    scheduler.load_state_dict(state["scheduler"])
    if scaler is not None and state.get("scaler"):
        scaler.load_state_dict(state["scaler"])  # AMP: the loss scale the run had reached
    result.epochs_done = result.resumed_from_epoch = int(state["epoch"])
    result.iterations = int(state["iterations"])
    result.seconds = float(state.get("train_seconds", 0.0))
    per_rank = state.get("rng_ranks") or []
    rank = distributed.current().rank
    set_rng_state(per_rank[rank] if len(per_rank) == world else state["rng"])  # older checkpoints: rank 0's


def targets_to_device(targets: list[dict], device: torch.device) -> list[dict]:
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
    resume: dict[str, Any] | None = None,
    run_config: dict[str, Any] | None = None,
    log: StepLog | None = None,
) -> TrainResult:
    """Train ``model`` on ``dataset``; returns time, iterations and the last losses.

    Args:
        checkpoint_path: where to write the checkpoint after every epoch (see
            :mod:`harness.run.checkpoint`); ``None``: no checkpoints.
        resume: a loaded checkpoint to continue from (its epoch, weights, optimiser,
            scheduler and RNG state); the result is then bit-identical to an
            uninterrupted run on the same device and thread count.
        run_config: the run's config, stored in the checkpoint so a resume can check it.
        log: called after every step with its losses, learning rate and batch size (the training log).
    """
    seed_everything(seed)
    per_epoch = iterations_per_epoch(len(dataset), cfg.images_per_batch)
    if per_epoch == 0:
        raise DatasetError(f"{getattr(dataset, 'name', 'the training split')} has no images to train on"
                           + (" on every rank" if distributed.current().active else ""))
    total = cfg.epochs * per_epoch
    model.to(device)
    net = distributed.wrap(model, device)  # DDP under torchrun: gradients averaged across ranks
    main = distributed.current().is_main  # only rank 0 writes checkpoints
    scaler = torch.amp.GradScaler("cuda") if cfg.amp and device.type == "cuda" else None
    optimizer = make_optimizer(model, cfg)
    scheduler = make_scheduler(optimizer, cfg, total)
    result = TrainResult()
    if resume is not None:
        _restore(resume, model, optimizer, scheduler, result, scaler)
    bar = progress("train", total) if progress else None
    if bar and result.iterations:
        bar.advance(min(result.iterations, total))
    model.train()
    earlier, started = result.seconds, time.perf_counter()
    try:
        with Stopwatch(device) as watch:
            for epoch in range(result.epochs_done, cfg.epochs):
                for batch in _batches(epoch_loader(dataset, cfg, seed=seed, epoch=epoch, workers=workers)):
                    lr = scheduler.get_last_lr()[0]  # the rate this step uses
                    values = _train_step(
                        net, optimizer, scheduler, batch, device=device, grad_clip=cfg.grad_clip,
                        step=result.iterations, amp=cfg.amp, scaler=scaler,
                    )
                    result.iterations += 1
                    result.last_losses = values
                    if log is not None:
                        log(result.iterations, values, lr=lr, images=len(batch[0]), epoch=epoch + 1,
                            epoch_end=result.iterations % per_epoch == 0)
                    if bar:
                        bar.advance(1, **{"loss": sum(values.values())})
                result.epochs_done = epoch + 1
                distributed.sync_buffers(model)  # rank 0's BatchNorm statistics on every rank
                # each rank's RNG (a collective: every rank has the same checkpoint setting)
                rngs = distributed.gather_objects(rng_state()) if checkpoint_path is not None else []
                if checkpoint_path is not None and main:
                    _check_finite_parameters(model, result.iterations)
                    state = {
                        "format": CHECKPOINT_FORMAT,
                        "epoch": result.epochs_done,
                        "iterations": result.iterations,
                        "train_seconds": earlier + time.perf_counter() - started,
                        "seed": seed,
                        "model": model.state_dict(),
                        "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(),
                        "rng": rngs[0],
                        "rng_ranks": rngs,  # torchrun: rank r resumes from rngs[r]
                        "scaler": scaler.state_dict() if scaler is not None else None,
                        "world_size": distributed.current().world_size,
                        "config": run_config or {},
                    }
                    save_checkpoint(checkpoint_path, state)
                    result.checkpoint = checkpoint_path
    finally:
        if bar:
            bar.close()
        result.seconds = earlier + (watch.seconds if "watch" in locals() and watch.seconds else 0.0)
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
        with timer.item(), autocast(device, cfg.amp):
            model([image.to(device)], eval_inputs(target, device), timer=timer)
    timer.warmup = False
    predictions = []
    bar = progress("test", n) if progress else None
    for i in range(n):
        image, target = dataset[i]
        with timer.item(), autocast(device, cfg.amp):
            (out,) = model([image.to(device)], eval_inputs(target, device), timer=timer)
        predictions.append(to_original_frame(out, target))
        if bar:
            bar.advance(1)
    if bar:
        bar.close()
    return predictions, timer


def eval_inputs(target: dict, device: torch.device) -> list[dict] | None:
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


RECALL_IOUS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))  # 0.5, 0.55, ..., 0.95


@torch.no_grad()
def proposal_recall_curve(
    model: nn.Module, dataset: DetectionDataset, counts: tuple[int, ...], *, device: torch.device, max_images: int | None,
    iou_counts: tuple[int, ...] = (),
) -> dict[str, Any]:
    """Recall of gt boxes at IoU 0.5 and 0.7 by the first n proposals, n in ``counts``; and, for each n in
    ``iou_counts``, recall against the IoU threshold 0.5 ... 0.95 (Faster R-CNN Figure 2, Fast R-CNN Figure 3):
    ``recall_vs_iou = {"iou": [...], "num_proposals": [...], "recall": [[one per IoU] one per n]}``.

    Every proposal source is asked for ``max(counts, iou_counts)`` proposals (for the RPN: instead of
    its test-time top-N), so selective search and the RPN are compared at equal n.
    """
    from harness.evaluation.detection import proposal_recall

    model.to(device).eval()
    props, gts = [], []
    n = len(dataset) if max_images is None else min(max_images, len(dataset))
    for i in range(n):
        image, target = dataset[i]
        (p,) = model.propose([image.to(device)], eval_inputs(target, device), top_n=max((*counts, *iou_counts)))
        props.append(p.cpu())
        gts.append(training_target(target)["boxes"])
    out: dict[str, Any] = {
        "num_proposals": list(counts),
        "recall@0.5": proposal_recall(props, gts, list(counts), 0.5),
        "recall@0.7": proposal_recall(props, gts, list(counts), 0.7),
        "mean_proposals": float(np.mean([p.shape[0] for p in props])) if props else 0.0,
    }
    if iou_counts:
        by_iou = [proposal_recall(props, gts, list(iou_counts), t) for t in RECALL_IOUS]  # [IoU][n]
        out["recall_vs_iou"] = {"iou": list(RECALL_IOUS), "num_proposals": list(iou_counts),
                                "recall": [[r[j] for r in by_iou] for j in range(len(iou_counts))]}
    return out
