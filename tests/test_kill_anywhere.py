"""Kill it anywhere, run it again, get the same table (issue 20, item 4).

A tiny sweep (two grid points, three epochs each) runs straight through into
folder A. The same command then runs into folder B, is ``SIGKILL``-ed at seeded
random moments (a random delay after a point starts, after it writes a
checkpoint, or after its test pass: during training, test, and the record
write) and restarted until it exits 0. B's records must give
the same metrics per row as A's, bit for bit (CPU, same thread count), with no
duplicate ``ok`` row, no torn line and no temporary file left anywhere.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from harness.config.sweep import config_hash

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--set", "data.synthetic.train_images=4", "--set", "data.synthetic.test_images=1",
        "--set", "data.min_size=64", "--set", "data.max_size=96", "--set", "test.warmup_images=0",
        "--set", "test.recall_counts=10", "--set", "model.rpn_pre_nms_top_n_train=300",
        "--set", "model.rpn_post_nms_top_n_train=60", "--set", "model.roi_batch_size=32",
        "--set", "train.warmup_iters=2", "--set", "train.epochs=3", "--set", "threads=1"]
KILLS = 3  # at most this many kills; then the command is let finish


def _command(results: Path) -> list[str]:
    return [sys.executable, "-m", "harness.cli", "sweep", "--detector", "faster",
            "--grid", "model.box_weight=0.5,1", "--results", str(results), *TINY]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "200"}


def _files(results: Path, pattern: str) -> dict[Path, int]:
    out = {}
    for path in results.glob(pattern):
        try:
            out[path] = path.stat().st_mtime_ns
        except FileNotFoundError:  # renamed away meanwhile
            pass
    return out


def _run_killed(results: Path, kill: tuple[str, float] | None) -> tuple[int, str]:
    """Run the command; SIGKILL it at ``kill = (phase, delay_s)`` (``None``: let it run).

    ``delay_s`` after the latest point's start (``"start"``), after that point wrote a checkpoint
    (``"train"``: mid-training, or right after the last epoch), or after its test pass wrote
    detections (``"test"``: proposal recall, FLOPs, the record write).
    """
    proc = subprocess.Popen(_command(results), env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True)
    lines: list[str] = []
    points: list[dict[str, dict[Path, int]]] = []  # per point started: the files there before it

    def read() -> None:
        for line in proc.stdout:
            lines.append(line)
            if "] run:" in line:
                points.append({p: _files(results, p) for p in ("*/checkpoint.pt", "*/detections.json")})

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    triggered = None
    patterns = {"train": "*/checkpoint.pt", "test": "*/detections.json"}
    while kill is not None and proc.poll() is None:
        phase, delay = kill
        if triggered is None and points:
            before = points[-1]
            if phase == "start" or _files(results, patterns[phase]).items() - before[patterns[phase]].items():
                triggered = time.monotonic()  # the point started / wrote a checkpoint / finished its test
        if triggered is not None and time.monotonic() - triggered >= delay:
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.002)
    proc.wait(timeout=300)
    reader.join(timeout=10)
    return proc.returncode, "".join(lines)


def _ok_rows(results: Path) -> dict[str, dict]:
    rows: dict[str, dict] = {}
    for line in (results / "runs.jsonl").read_text().splitlines():
        record = json.loads(line)  # a torn line fails here
        if record["status"] == "ok":
            key = config_hash(record["config"])
            assert key not in rows, f"duplicate ok row for box_weight={record['config']['model']['box_weight']}"
            rows[key] = record
    return rows


@pytest.mark.slow
def test_killed_and_restarted_sweep_gives_the_same_table(tmp_path: Path):
    straight, killed = tmp_path / "A", tmp_path / "B"
    rc, out = _run_killed(straight, None)
    assert rc == 0, out
    reference = _ok_rows(straight)
    assert len(reference) == 2
    rng = random.Random(20)
    kills = 0
    for attempt in range(KILLS + 3):
        # the first kill right after point 1's first checkpoint (epoch 1 of 3): the restart must resume it
        delay = (("train", 0.0) if kills == 0 else (rng.choice(["start", "train", "test"]), rng.uniform(0.0, 0.3))
                 if kills < KILLS else None)
        rc, out = _run_killed(killed, delay)
        print(f"attempt {attempt}: kill {delay}, rc {rc}; "
              f"{[line for line in out.splitlines() if '] run:' in line or 'sweep:' in line]}")
        if attempt == 1:
            assert "(resuming " in out, out
        if rc == 0:
            break
        assert rc == -signal.SIGKILL, out  # a restart must not fail for any other reason
        kills += 1
    else:
        pytest.fail("the sweep never finished")
    assert kills >= 2, f"only {kills} kills landed: the test did not test much"
    rows = _ok_rows(killed)
    assert rows.keys() == reference.keys()
    assert any((r.get("resumed_from_epoch") or 0) >= 1 for r in rows.values())  # resumed, not started again
    for key, ref in reference.items():
        got = rows[key]
        assert got["metrics"] == ref["metrics"], f"metrics differ for box_weight={ref['config']['model']['box_weight']}"
        assert got["final_losses"] == ref["final_losses"]
    leftovers = [str(p.relative_to(killed)) for p in killed.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []
