"""Running a list of sweep points (``harness sweep``, ``harness reproduce``): resumable and safe to kill.

A point whose config already has an ``ok`` record is skipped; each point runs under a claim, so two
sweeps in one folder never run the same point; a point killed after a checkpoint is resumed from it.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.config import to_dict
from harness.config.sweep import SweepPoint, record_config_hash
from harness.run.checkpoint import CheckpointError, prepare_resume
from harness.run.results import read_records
from harness.run.sweep_resume import (
    claim_point,
    remove_stale_temp_files,
    unfinished_run,
)


def finished_keys(results_dir: Path, records: list[dict[str, Any]] | None = None) -> set[str]:
    """Config hashes of the runs that finished ``ok`` in ``results_dir``."""
    records = read_records(results_dir) if records is None else records
    return {record_config_hash(r["config"]) for r in records
            if r.get("status") == "ok" and isinstance(r.get("config"), dict)}


def run_sweep(
    points: list[SweepPoint],
    *,
    results_dir: Path,
    execute: Callable[..., dict[str, Any]],
    say: Callable[[str], None] = print,
    counts: dict[str, int] | None = None,
) -> dict[str, int]:
    """Run every point without an ``ok`` record; returns counts of ran / skipped / failed.

    Each point runs under its claim; a point another live process is running is skipped (and
    counted so). A point whose earlier run was killed after a checkpoint is resumed from it:
    ``execute(config, resume)`` with a :class:`harness.run.checkpoint.Resume`; otherwise ``execute(config)``.
    ``counts``, when given, is the returned dict, kept current point by point: a caller stopped by
    Ctrl-C (re-raised) still knows how far the sweep got.
    """
    remove_stale_temp_files(results_dir)
    done = finished_keys(results_dir)
    counts = counts if counts is not None else {}
    counts.update(ran=0, skipped=0, failed=0)
    for i, point in enumerate(points, start=1):
        label = ", ".join(f"{k}={v}" for k, v in point.overrides.items())
        if point.key in done:
            counts["skipped"] += 1
            say(f"[{i}/{len(points)}] skip (already ok): {label}")
            continue
        with claim_point(results_dir, point.key) as mine:
            records = read_records(results_dir)
            if not mine or point.key in finished_keys(results_dir, records):
                counts["skipped"] += 1
                say(f"[{i}/{len(points)}] skip ({'running in another process' if not mine else 'already ok'}): "
                    f"{label}")
                continue
            resume = None
            run_id = unfinished_run(results_dir, point.key, records)
            if run_id is not None:
                try:
                    resume = prepare_resume(results_dir, run_id, to_dict(point.config))
                except CheckpointError as err:  # unreadable after all: start the point again
                    say(f"[{i}/{len(points)}] cannot resume {run_id} ({err}); starting again")
            say(f"[{i}/{len(points)}] run: {label}"
                + (f" (resuming {resume.run_id} after epoch {resume.epoch})" if resume is not None else ""))
            try:
                if resume is not None:
                    execute(point.config, resume)
                else:
                    execute(point.config)
            except KeyboardInterrupt:
                raise
            except Exception as err:  # recorded as failed by the runner; the sweep goes on
                counts["failed"] += 1
                say(f"[{i}/{len(points)}] failed: {type(err).__name__}: {err}")
                continue
        counts["ran"] += 1
        done.add(point.key)
    return counts
