"""Training checkpoints: what one holds, how it is written and read, and resuming from one.

A checkpoint is written after every epoch to ``<results>/<run_id>/checkpoint.pt``
(atomically, see :mod:`harness.run.storage`) and holds everything the rest of the
training depends on::

    format       CHECKPOINT_FORMAT
    epoch        epochs completed (the next epoch to run)
    iterations   optimiser steps taken
    train_seconds  training wall time so far
    model, optimizer, scheduler   state dicts
    rng          global RNG states (harness.run.seeding.rng_state) of rank 0
    rng_ranks    the same for every torchrun rank, in rank order (one entry without torchrun)
    world_size   processes that trained it (a resume must use as many)
    scaler       AMP loss-scaler state on CUDA, else None
    config       the run's resolved config (harness.config.to_dict)

It is loaded with ``torch.load(..., weights_only=True)``: tensors and plain
containers only, so a crafted file cannot run code. Each epoch's data order
and flips are derived from ``(seed, epoch)`` rather than saved, so resuming at
an epoch boundary replays exactly what an uninterrupted run would have done.

Resume (``harness run ... --resume RUN_ID``) continues the run in its own
folder under the same run id; the config must be the one the run started with,
except for the keys in :data:`RESUME_MAY_DIFFER` (they do not change what is
computed, or, for ``train.epochs``, extend or shorten the schedule on purpose).
"""
from __future__ import annotations

import json
import logging
import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from harness.config import detector_default, flatten_dict, to_dict
from harness.run.storage import atomic_torch_save, stale_temps

log = logging.getLogger(__name__)

CHECKPOINT_FILE = "checkpoint.pt"
CHECKPOINT_FORMAT = 1
REQUIRED_KEYS = ("format", "epoch", "iterations", "model", "optimizer", "scheduler", "rng", "config")
# train.epochs: extend (or cut) a run on purpose; the lr milestones are fractions of the
# new total, so the schedule after the resume point follows the new length.
# device / threads / data.workers: where and how fast, not what, is computed.
RESUME_MAY_DIFFER = frozenset({"train.epochs", "device", "threads", "data.workers"})


class CheckpointError(ValueError):
    """A checkpoint is missing, unreadable, refused or does not match the run; message for the user."""


def save_checkpoint(path: Path, state: dict[str, Any]) -> int:
    """Write ``state`` to ``path`` atomically; returns bytes written.

    Raises:
        StorageError: the disk is full (or similar); the previous checkpoint is kept.
    """
    return atomic_torch_save(Path(path), state, what="checkpoint")


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` (CPU tensors, ``weights_only=True``).

    Raises:
        CheckpointError: missing, truncated / corrupt, containing pickled objects
            (refused), or not a harness checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    for stale in stale_temps(path):  # left by a process killed while writing; the rename never happened
        log.warning("removing %s, an unfinished checkpoint write; %s is the last complete one", stale, path.name)
        stale.unlink(missing_ok=True)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(
            f"refusing to load {path}: it holds pickled Python objects, not just tensors "
            f"(loaded with weights_only=True, so it cannot run code)"
        ) from None
    except Exception as err:  # arbitrary bytes fail in many ways (RuntimeError, EOFError, KeyError, ...)
        raise CheckpointError(f"checkpoint {path} is unreadable (truncated or corrupt: {type(err).__name__})") from None
    if not isinstance(state, dict) or any(k not in state for k in REQUIRED_KEYS):
        missing = [k for k in REQUIRED_KEYS if not isinstance(state, dict) or k not in state]
        raise CheckpointError(f"{path} is not a resumable harness checkpoint (missing {', '.join(missing)})")
    if state["format"] != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} has checkpoint format {state['format']}, this harness reads {CHECKPOINT_FORMAT}")
    return state


def _flatten(tree: dict[str, Any]) -> dict[str, Any]:
    """Dotted keys of a config dict, after a JSON round trip so tuples equal lists."""
    return flatten_dict(json.loads(json.dumps(tree)))


def config_differences(
    saved: dict[str, Any], current: dict[str, Any], defaults: dict[str, Any] | None = None
) -> list[str]:
    """``"key: run started with A, now B"`` for every key outside :data:`RESUME_MAY_DIFFER` that differs.

    A key missing from ``saved`` was added to the harness after the run started;
    it is accepted at its default value (``defaults``), which by convention keeps
    the old behaviour, so updating the harness does not strand a long run.
    """
    old, new = _flatten(saved), _flatten(current)
    default = _flatten(defaults) if defaults is not None else {}
    out = []
    for key in sorted(set(old) | set(new)):
        if key in RESUME_MAY_DIFFER or old.get(key) == new.get(key):
            continue
        if key not in old:
            if key in default and new.get(key) == default[key]:
                continue
            out.append(f"{key}: not in the checkpoint (a newer key), now {new.get(key)!r}")
        else:
            out.append(f"{key}: run started with {old.get(key)!r}, now {new.get(key)!r}")
    return out


@dataclass(frozen=True)
class Resume:
    """A run to continue: its id, its folder and the checkpoint state to start from."""

    run_id: str
    run_dir: Path
    state: dict[str, Any]

    @property
    def epoch(self) -> int:
        """Epochs already completed."""
        return int(self.state["epoch"])


def prepare_resume(results_dir: Path, run_id: str, config: dict[str, Any]) -> Resume:
    """Find, load and check the checkpoint of ``results_dir/run_id`` for a run with ``config``.

    Raises:
        CheckpointError: bad run id, no such run or checkpoint, unreadable
            checkpoint, or a config that differs (each differing key listed).
    """
    if not run_id or "/" in run_id or "\\" in run_id or run_id in (".", ".."):
        raise CheckpointError(f"--resume takes a run id (a folder name under {results_dir}), got {run_id!r}")
    run_dir = Path(results_dir) / run_id
    if not run_dir.is_dir():
        known = sorted(p.name for p in Path(results_dir).glob("*") if (p / CHECKPOINT_FILE).is_file())
        listing = f"; runs with a checkpoint: {', '.join(known[-5:])}" if known else ""
        raise CheckpointError(f"no run {run_id!r} under {results_dir}{listing}")
    path = run_dir / CHECKPOINT_FILE
    if not path.is_file():
        raise CheckpointError(
            f"run {run_id!r} has no {CHECKPOINT_FILE} (it stopped before its first epoch ended, "
            f"or ran with train.checkpoint=false); start it again instead"
        )
    state = load_checkpoint(path)
    # a key the checkpoint lacks is accepted at its old behaviour: the plain defaults (detector_default), not
    # what build_config derives from other keys (the cpu profile's init: before model.init, runs were random)
    defaults = to_dict(detector_default(config.get("detector", "faster"), config.get("profile", "cpu")))
    differences = config_differences(state["config"], config, defaults)
    if differences:
        raise CheckpointError(
            f"cannot resume {run_id}: the config differs from the one it started with "
            f"(only {', '.join(sorted(RESUME_MAY_DIFFER))} may change): " + "; ".join(differences)
        )
    return Resume(run_id=run_id, run_dir=run_dir, state=state)
