"""Multi-process training with ``torchrun`` (DistributedDataParallel).

``torchrun --nproc_per_node N -m harness run --detector faster ...`` starts N
copies of the run; each reads torchrun's ``RANK`` / ``WORLD_SIZE`` /
``LOCAL_RANK`` and joins one process group (gloo on the CPU, NCCL on CUDA, one
GPU per process). Then:

- training: each rank trains on its own shard of every epoch
  (:class:`torch.utils.data.DistributedSampler`, seeded by the run's seed and
  the epoch), the model wrapped in DDP so gradients are averaged and the
  parameters stay identical on every rank; the effective batch is
  ``N x train.images_per_batch`` (the learning rate is not rescaled: set
  ``train.lr`` yourself);
- selective search: the missing cache entries are split across ranks, then
  every rank reads the whole cache;
- rank 0 alone writes checkpoints, tests, evaluates and appends the run record
  (``distributed`` says how many processes trained); the other ranks stop after
  training;
- when another rank fails, it leaves its error in ``RESULTS/.rank_failures/``
  before it exits; torchrun then stops rank 0 (SIGTERM), or rank 0's next
  collective fails, and rank 0 records the run as ``failed`` with that rank's
  error as the reason (see :func:`report_failure`, :func:`peer_failures`).

Without torchrun (no ``WORLD_SIZE`` or ``WORLD_SIZE=1``) nothing here is active.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def active(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def as_record(self) -> dict[str, object]:
        return {"world_size": self.world_size, "backend": self.backend}


def from_env() -> DistInfo:
    """What torchrun's environment says (a single process when it says nothing)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    return DistInfo(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))


def current() -> DistInfo:
    """The process group this process belongs to (``DistInfo()`` when none)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() <= 1:
        return DistInfo()
    env = from_env()
    return DistInfo(dist.get_rank(), dist.get_world_size(), env.local_rank, dist.get_backend())


@contextmanager
def process_group(device: torch.device) -> Iterator[tuple[DistInfo, torch.device]]:
    """Join torchrun's process group for the duration of a run; yields (info, this rank's device).

    A process group set up by the caller is used as it is (and left open).
    """
    env = from_env()
    if not env.active or (dist.is_available() and dist.is_initialized()):
        info = current()
        yield info, _rank_device(device, info)
        return
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(env.local_rank)
    dist.init_process_group(backend, timeout=timedelta(minutes=30))
    try:
        info = current()
        yield info, _rank_device(device, info)
    finally:
        dist.destroy_process_group()


def _rank_device(device: torch.device, info: DistInfo) -> torch.device:
    return torch.device("cuda", info.local_rank) if device.type == "cuda" and info.active else device


def wrap(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` as DDP when a process group is active, else ``model`` itself.

    Every trainable parameter gets a gradient in every step (frozen layers have
    ``requires_grad=False``; classification-only Fast R-CNN weights its box loss
    by 0, which keeps the regressor in the graph), so DDP need not search the
    graph for unused ones.
    """
    if not current().active:
        return model
    ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def all_true(flag: bool, device: torch.device) -> bool:
    """``flag`` on every rank (a no-op without a process group)."""
    if not current().active:
        return flag
    t = torch.tensor([1 if flag else 0], device=device if device.type == "cuda" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item())


def sync_buffers(model: nn.Module) -> None:
    """Rank 0's buffers (BatchNorm running statistics) on every rank.

    DDP broadcasts them at the start of each forward; after the last step each
    rank holds the statistics of its own last batch, so training ends with this.
    """
    if current().active:
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)


def gather_objects(obj: object) -> list[object]:
    """Every rank's ``obj``, in rank order, on every rank (``[obj]`` without a process group)."""
    info = current()
    if not info.active:
        return [obj]
    out: list[object] = [None] * info.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if current().active:
        dist.barrier()


FAILURES_DIR = ".rank_failures"


def _launch_id() -> str:
    # torchrun names each launch (--standalone: a fresh uuid); files of other launches are not ours
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in os.environ.get("TORCHELASTIC_RUN_ID", "none"))


def report_failure(results_dir: Path, err: BaseException) -> None:
    """Leave this (non-main) rank's error where rank 0 finds it; best effort, never raises.

    Written before the process exits, hence before torchrun stops the other
    ranks or their collectives fail, so rank 0 always finds it.
    """
    info = current() if current().active else from_env()
    folder = Path(results_dir) / FAILURES_DIR
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{_launch_id()}.rank{info.rank}.tmp"
        tmp.write_text(f"{type(err).__name__}: {err}", encoding="utf-8")
        tmp.replace(folder / f"{_launch_id()}.rank{info.rank}.txt")
    except OSError:
        pass


def peer_failures(results_dir: Path, *, since: float) -> list[str]:
    """The errors other ranks of this launch reported since ``since`` (a ``time.time()``), as
    ``"rank R: Type: message"`` in rank order; the files are removed once read."""
    folder = Path(results_dir) / FAILURES_DIR
    prefix = f"{_launch_id()}.rank"
    found: list[tuple[int, str]] = []
    for path in folder.glob(f"{prefix}*.txt") if folder.is_dir() else ():
        try:
            rank = int(path.name[len(prefix):-len(".txt")])
            fresh = path.stat().st_mtime >= since - 1.0  # an earlier launch under the same id is stale
            text = path.read_text(encoding="utf-8", errors="replace").strip()
            path.unlink()
        except (OSError, ValueError):
            continue
        if fresh:
            found.append((rank, f"rank {rank}: {text}"))
    try:
        folder.rmdir()  # only when empty
    except OSError:
        pass
    return [message for _, message in sorted(found)]
