"""Sweep resumption pieces (issue 20, item 4): point claims, run locks, stale files of dead runs.

A "live process" here is a real child process holding the lock; "dead" is the
same child killed with SIGKILL (the kernel drops its flock).
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from harness.config.sweep import expand, parse_grid
from harness.run.sweep import run_sweep
from harness.run.sweep_resume import RUN_LOCK, is_live, remove_stale_temp_files

ROOT = Path(__file__).resolve().parents[1]


def _holder(code: str) -> subprocess.Popen:
    """A child that enters ``code``'s ``with`` block, says so, and waits for stdin."""
    script = f"import sys\nfrom pathlib import Path\nfrom harness.run.sweep_resume import *\n{code}\n" \
             "    print('held', flush=True); sys.stdin.readline()\n"
    proc = subprocess.Popen([sys.executable, "-c", script], env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_a_point_claimed_by_a_live_process_is_skipped(tmp_path: Path):
    points = expand("faster", parse_grid(["train.lr=0.01,0.02"]), seeds=1)
    holder = _holder(f"with claim_point(Path({str(tmp_path)!r}), {points[0].key!r}):")
    said, ran = [], []
    try:
        counts = run_sweep(points, results_dir=tmp_path, execute=lambda cfg: ran.append(cfg.train.lr),
                           say=said.append)
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert ran == [0.02] and counts == {"ran": 1, "skipped": 1, "failed": 0}
    assert any("skip (running in another process)" in s for s in said)
    # the holder is dead: its claim is free, the point runs
    counts = run_sweep(points[:1], results_dir=tmp_path, execute=lambda cfg: ran.append(cfg.train.lr),
                       say=said.append)
    assert ran == [0.02, 0.01] and counts["ran"] == 1


def test_stale_files_of_dead_runs_go_those_of_live_runs_stay(tmp_path: Path):
    live, dead, empty = tmp_path / "run-live", tmp_path / "run-dead", tmp_path / "run-empty"
    for d in (live, dead, empty):
        d.mkdir()
    (live / "checkpoint.pt.tmp").write_bytes(b"being written")
    (dead / "checkpoint.pt").write_bytes(b"whole")
    (dead / "checkpoint.pt.tmp").write_bytes(b"torn")
    (empty / RUN_LOCK).write_text("123\n")  # a run killed before it wrote anything
    holder = _holder(f"with run_lock(Path({str(live)!r})):")
    try:
        assert is_live(live) and not is_live(dead)
        removed = remove_stale_temp_files(tmp_path)
        assert removed == [dead / "checkpoint.pt.tmp"]
        assert (live / "checkpoint.pt.tmp").exists() and (live / RUN_LOCK).exists()
        assert (dead / "checkpoint.pt").exists() and not empty.exists()
    finally:
        holder.kill()
        holder.wait(timeout=30)
    assert not is_live(live) and not (live / RUN_LOCK).exists()  # a dead holder's lock file is cleaned
    assert remove_stale_temp_files(tmp_path) == [live / "checkpoint.pt.tmp"] and live.is_dir() is False
