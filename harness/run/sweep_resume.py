"""What makes ``sweep`` and ``reproduce`` safe to kill anywhere and run again (issue 20, item 4).

- A run holds an ``flock`` on ``<run folder>/.running`` while it runs (removed at
  its end). The kernel drops it when the process dies, ``kill -9`` included, so a
  folder whose lock is free belongs to no live process.
- A sweep point is run under a claim, an ``flock`` on
  ``<results>/.claims/<config hash>.lock`` (removed when the point ends): a second sweep or reproduction in the
  same folder skips a point another live process is running, instead of running
  it twice (and recording two ``ok`` rows).
- Under its claim, a point without an ``ok`` record whose earlier run was killed
  after a checkpoint (a folder holding ``checkpoint.pt`` of the same config, no
  ``ok`` record, no live process) is *resumed* from that checkpoint, in that
  folder and under its run id, instead of being started again: the work is not
  lost, and resuming is bit-exact on the CPU (``tests/test_resume.py``).
- Temporary files (``*.tmp``) and run locks that a killed process left in a run
  folder no live process holds are removed when a sweep starts (and the folder,
  if nothing else is in it).
"""
from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from harness.run.storage import claim_file, fcntl

log = logging.getLogger(__name__)

RUN_LOCK = ".running"
CLAIMS = ".claims"


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Held by the process running ``run_dir`` (see the module docstring)."""
    with claim_file(Path(run_dir) / RUN_LOCK, remove=True):
        yield


def is_live(run_dir: Path) -> bool:
    """Whether a live process holds ``run_dir``'s run lock."""
    lock = Path(run_dir) / RUN_LOCK
    if fcntl is None or not lock.exists():
        return False
    with claim_file(lock, remove=False) as mine:
        pass
    if mine:
        lock.unlink(missing_ok=True)  # left by a killed run
    return not mine


@contextmanager
def claim_point(results_dir: Path, key: str) -> Iterator[bool]:
    """Claim a sweep point (by config hash); yields ``False`` when a live process holds it."""
    with claim_file(Path(results_dir) / CLAIMS / f"{key}.lock", remove=True) as mine:
        yield mine


def remove_stale_temp_files(results_dir: Path) -> list[Path]:
    """Remove what killed processes left in run folders no live process holds; returns the files removed.

    That is ``*.tmp`` files and run locks; a folder left empty (killed before it wrote anything) goes too.
    """
    removed: list[Path] = []
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        return removed
    for run_dir in sorted(p for p in results_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        stale = list(run_dir.glob("*.tmp"))
        if not stale and not (run_dir / RUN_LOCK).exists():
            continue
        if is_live(run_dir):  # (when free, this removes the dead run's lock file)
            continue
        for path in stale:
            log.warning("removing %s, left by a process killed while writing it", path)
            path.unlink(missing_ok=True)
            removed.append(path)
        if not any(run_dir.iterdir()):
            run_dir.rmdir()
    return removed


def saved_config(checkpoint: Path) -> dict[str, Any] | None:
    """The config stored in a checkpoint, read without loading its tensors (``mmap``); None if unreadable."""
    import torch

    try:
        state = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # a torn or foreign file: not resumable, the point starts again
        return None
    config = state.get("config") if isinstance(state, dict) else None
    return config if isinstance(config, dict) else None


def unfinished_run(results_dir: Path, key: str, records: list[dict[str, Any]]) -> str | None:
    """Run id of an earlier, killed or interrupted run of the point ``key`` that can be resumed, newest first.

    That is a run folder holding a checkpoint whose config hashes to ``key``, with no ``ok`` record
    and no live process.
    """
    from harness.config.sweep import record_config_hash
    from harness.run.checkpoint import CHECKPOINT_FILE

    ok = {r.get("run_id") for r in records if r.get("status") == "ok"}
    results_dir = Path(results_dir)
    if not results_dir.is_dir():
        return None
    for run_dir in sorted(results_dir.iterdir(), reverse=True):  # run ids start with a UTC time stamp
        checkpoint = run_dir / CHECKPOINT_FILE
        if run_dir.name in ok or not checkpoint.is_file() or is_live(run_dir):
            continue
        config = saved_config(checkpoint)
        if config is not None and record_config_hash(config) == key:
            return run_dir.name
    return None
