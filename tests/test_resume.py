"""Interruption and resume (issue 9, point 4): a stopped run continues bit-exactly.

The reference is one uninterrupted tiny Faster R-CNN run (3 epochs of 3 steps,
flips on). Interrupted runs are stopped three ways (KeyboardInterrupt inside
the loop, SIGTERM and kill -9 of a real ``harness run`` process) and resumed;
their final parameters must equal the reference's exactly (``torch.equal``).
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from dirty_data import TINY_RUN
from typer.testing import CliRunner

from harness.cli import app
from harness.config import build_config, parse_set_options, to_dict
from harness.run.builder import build_model
from harness.run.checkpoint import (
    CHECKPOINT_FILE,
    CheckpointError,
    config_differences,
    load_checkpoint,
    prepare_resume,
)
from harness.run.runner import build_datasets
from harness.run.seeding import seed_everything
from harness.train.engine import train

EPOCHS = ["--epochs", "3"]
runner = CliRunner()


def _records(results: Path) -> list[dict]:
    return [json.loads(line) for line in (results / "runs.jsonl").read_text().splitlines()]


def _model_state(results: Path, run_id: str) -> dict[str, torch.Tensor]:
    return load_checkpoint(results / run_id / CHECKPOINT_FILE)["model"]


def _assert_same_parameters(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"parameters differ after resume: {different[:5]}"


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, torch.Tensor]:
    """Final weights of the uninterrupted run (through the CLI, like the resumed ones)."""
    results = tmp_path_factory.mktemp("reference")
    result = runner.invoke(app, ["run", "--results", str(results), *TINY_RUN, *EPOCHS])
    assert result.exit_code == 0, result.output
    (record,) = _records(results)
    assert record["timing"]["epochs"] == 3 and record["resumed_from_epoch"] is None
    return _model_state(results, record["run_id"])


def _start(results: Path) -> subprocess.Popen:
    """``harness run`` in a child process (so it can really be killed)."""
    command = [sys.executable, "-m", "harness.cli", "run", "--results", str(results), *TINY_RUN, *EPOCHS]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for_first_checkpoint(proc: subprocess.Popen, results: Path, timeout: float = 120.0) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = list(results.glob(f"*/{CHECKPOINT_FILE}"))
        if found:
            return found[0]
        if proc.poll() is not None:
            pytest.fail(f"harness run ended before its first checkpoint:\n{proc.stdout.read()}")
        time.sleep(0.01)
    proc.kill()
    pytest.fail("no checkpoint appeared in time")


def _resume(results: Path, run_id: str) -> dict:
    result = runner.invoke(app, ["run", "--results", str(results), *TINY_RUN, *EPOCHS, "--resume", run_id])
    assert result.exit_code == 0, result.output
    assert f"resuming {run_id}" in result.output
    return _records(results)[-1]


@pytest.mark.slow
def test_kill_9_then_resume_gives_the_uninterrupted_parameters(tmp_path: Path, reference):
    proc = _start(tmp_path)
    checkpoint = _wait_for_first_checkpoint(proc, tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL
    state = load_checkpoint(checkpoint)  # whole and loadable: written by rename
    assert 1 <= state["epoch"] < 3, "the kill came too late to test anything"
    assert not (tmp_path / "runs.jsonl").exists()  # kill -9 leaves no record: nothing could write one
    run_id = checkpoint.parent.name
    record = _resume(tmp_path, run_id)
    assert record["run_id"] == run_id and record["status"] == "ok"
    assert record["resumed_from_epoch"] == state["epoch"] and record["timing"]["epochs"] == 3
    assert record["timing"]["train_iters"] == 9
    _assert_same_parameters(_model_state(tmp_path, run_id), reference)


@pytest.mark.slow
def test_sigterm_records_interrupted_and_resume_matches(tmp_path: Path, reference):
    proc = _start(tmp_path)
    checkpoint = _wait_for_first_checkpoint(proc, tmp_path)
    proc.send_signal(signal.SIGTERM)
    output, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, output
    assert "Traceback" not in output and "--resume" in output
    (record,) = _records(tmp_path)
    assert record["status"] == "interrupted" and "signal" in record["reason"]
    assert [p.name for p in checkpoint.parent.iterdir() if p.suffix == ".tmp"] == []
    assert load_checkpoint(checkpoint)["epoch"] >= 1
    resumed = _resume(tmp_path, record["run_id"])
    assert resumed["status"] == "ok" and resumed["run_id"] == record["run_id"]
    _assert_same_parameters(_model_state(tmp_path, record["run_id"]), reference)


class _StopAfter:
    """A progress bar that raises KeyboardInterrupt (Ctrl-C) at training step ``n``."""

    def __init__(self, n: int) -> None:
        self.n, self.steps = n, 0

    def __call__(self, desc: str, total: int) -> "_StopAfter":
        return self

    def advance(self, n: int = 1, **fields: float) -> None:
        self.steps += n
        if self.steps == self.n:
            raise KeyboardInterrupt

    def close(self) -> None:
        pass


def _engine_run(tmp_path: Path, *, stop_at: int | None = None, resume: dict | None = None) -> torch.nn.Module:
    cfg = build_config(overrides={**parse_set_options(TINY_RUN[1::2]), "train.epochs": 3})
    train_set, _ = build_datasets(cfg)
    seed_everything(cfg.seed)
    model = build_model(cfg, train_set.num_classes)
    train(model, train_set, cfg.train, device=torch.device("cpu"), seed=cfg.seed,
          checkpoint_path=tmp_path / CHECKPOINT_FILE, progress=_StopAfter(stop_at) if stop_at else None,
          resume=resume, run_config=to_dict(cfg))
    return model


def test_ctrl_c_mid_epoch_keeps_the_last_epoch_checkpoint_and_resumes_exactly(tmp_path: Path, reference):
    with pytest.raises(KeyboardInterrupt):
        _engine_run(tmp_path, stop_at=5)  # step 5 of 9: inside epoch 2, after checkpoint 1
    state = load_checkpoint(tmp_path / CHECKPOINT_FILE)
    assert state["epoch"] == 1 and state["iterations"] == 3
    assert not (tmp_path / f"{CHECKPOINT_FILE}.tmp").exists()
    model = _engine_run(tmp_path, resume=state)
    _assert_same_parameters(model.state_dict(), reference)


def test_resume_refuses_other_config_unknown_run_and_bad_checkpoint(tmp_path: Path):
    cfg = build_config(overrides=parse_set_options(TINY_RUN[1::2]))
    run_dir = tmp_path / "run-a"
    run_dir.mkdir()
    torch.save({"format": 1, "epoch": 1, "iterations": 3, "model": {}, "optimizer": {}, "scheduler": {},
                "rng": {}, "config": to_dict(cfg)}, run_dir / CHECKPOINT_FILE)
    assert prepare_resume(tmp_path, "run-a", to_dict(cfg)).epoch == 1
    longer = build_config(overrides={**parse_set_options(TINY_RUN[1::2]), "train.epochs": 20, "threads": 1})
    assert prepare_resume(tmp_path, "run-a", to_dict(longer)).epoch == 1  # may differ: epochs, threads
    other = build_config(overrides={**parse_set_options(TINY_RUN[1::2]), "train.lr": 0.5})
    with pytest.raises(CheckpointError, match=r"train\.lr: run started with 0\.02, now 0\.5"):
        prepare_resume(tmp_path, "run-a", to_dict(other))
    with pytest.raises(CheckpointError, match="no run 'run-b'.*run-a"):
        prepare_resume(tmp_path, "run-b", to_dict(cfg))
    with pytest.raises(CheckpointError, match="run id"):
        prepare_resume(tmp_path, "../run-a", to_dict(cfg))
    older = to_dict(cfg)
    del older["model"]["box_weight"]  # a checkpoint from before a key existed
    assert config_differences(older, to_dict(cfg), to_dict(build_config())) == []  # at its default: fine
    changed = to_dict(build_config(overrides={**parse_set_options(TINY_RUN[1::2]), "model.box_weight": 2.0}))
    assert config_differences(older, changed, to_dict(build_config())) == [
        "model.box_weight: not in the checkpoint (a newer key), now 2.0"
    ]
    # a run from before model.init existed started from random init: it resumes as that, whatever the cpu
    # profile's default init is now, and not as pre-trained (which would pre-train for minutes for a model
    # the checkpoint replaces)
    no_init = to_dict(cfg)
    del no_init["model"]["init"]
    random_now = build_config(overrides={**parse_set_options(TINY_RUN[1::2]), "model.init": "random"})
    pretrained_now = build_config(overrides={**parse_set_options(TINY_RUN[1::2]), "model.init": "pretrained"})
    (tmp_path / "run-old").mkdir()
    torch.save({"format": 1, "epoch": 1, "iterations": 3, "model": {}, "optimizer": {}, "scheduler": {},
                "rng": {}, "config": no_init}, tmp_path / "run-old" / CHECKPOINT_FILE)
    assert prepare_resume(tmp_path, "run-old", to_dict(random_now)).epoch == 1
    with pytest.raises(CheckpointError, match="model.init: not in the checkpoint .*'pretrained'"):
        prepare_resume(tmp_path, "run-old", to_dict(pretrained_now))
    data = (run_dir / CHECKPOINT_FILE).read_bytes()
    (run_dir / CHECKPOINT_FILE).write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="unreadable"):
        prepare_resume(tmp_path, "run-a", to_dict(cfg))


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--resume", "nope"], "no run 'nope'"),
        (["--resume", "run-a", "--set", "train.lr=0.5"], "train.lr: run started with"),
    ],
)
def test_cli_resume_errors_exit_2(tmp_path: Path, extra: list[str], message: str):
    cfg = build_config(overrides=parse_set_options(TINY_RUN[1::2]))
    (tmp_path / "run-a").mkdir()
    torch.save({"format": 1, "epoch": 1, "iterations": 3, "model": {}, "optimizer": {}, "scheduler": {},
                "rng": {}, "config": to_dict(cfg)}, tmp_path / "run-a" / CHECKPOINT_FILE)
    result = runner.invoke(app, ["run", "--results", str(tmp_path), *TINY_RUN, *extra])
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())  # rich wraps long lines
    assert message in text and "Traceback" not in text
    assert not (tmp_path / "runs.jsonl").exists()  # refused before anything ran


def test_stale_temp_file_from_a_killed_write_is_ignored(tmp_path: Path):
    good = {"format": 1, "epoch": 2, "iterations": 6, "model": {"w": torch.ones(3)}, "optimizer": {},
            "scheduler": {}, "rng": {}, "config": {}}
    torch.save(good, tmp_path / CHECKPOINT_FILE)
    (tmp_path / f"{CHECKPOINT_FILE}.tmp").write_bytes(b"PK\x03\x04 half a zip")  # kill -9 during a write
    assert torch.equal(load_checkpoint(tmp_path / CHECKPOINT_FILE)["model"]["w"], torch.ones(3))
    assert not (tmp_path / f"{CHECKPOINT_FILE}.tmp").exists()
