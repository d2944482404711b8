"""The training log (issue 19 item 5): train_log.jsonl every N steps, resumable, staged; --tensorboard."""
from __future__ import annotations

import builtins
import json
from pathlib import Path

import pytest
from dirty_data import TINY_RUN
from typer.testing import CliRunner

from harness.cli import app
from harness.config import ConfigError
from harness.train.train_log import (
    TRAIN_LOG_FILE,
    TrainLog,
    read_train_log,
    tensorboard_writer_class,
)

runner = CliRunner()
LOSSES = {"loss_cls": 1.0, "loss_box": 0.5}


def _log(path: Path, steps: range, *, every: int, per_epoch: int, log: TrainLog | None = None) -> TrainLog:
    log = log or TrainLog(path, every)
    for it in steps:
        log(it, {"loss_cls": 1.0 / it, "loss_box": 0.5}, lr=0.01, images=2, epoch=(it - 1) // per_epoch + 1,
            epoch_end=it % per_epoch == 0)
    return log


def test_logs_every_n_steps_and_each_epoch_end(tmp_path):
    _log(tmp_path / "log.jsonl", range(1, 15), every=4, per_epoch=7)
    entries = read_train_log(tmp_path / "log.jsonl")
    assert [e["step"] for e in entries] == [4, 7, 8, 12, 14]
    e = entries[0]
    assert e["losses"] == {"loss_cls": 0.25, "loss_box": 0.5} and e["loss"] == pytest.approx(0.75)
    assert e["lr"] == 0.01 and e["epoch"] == 1 and e["stage"] == "train" and e["images_per_s"] > 0


def test_resume_keeps_entries_up_to_the_checkpoint_and_continues(tmp_path):
    path = tmp_path / "log.jsonl"
    _log(path, range(1, 10), every=2, per_epoch=4)  # stopped at step 9, after the checkpoint of step 8
    resumed = TrainLog(path, 2, resume_step=8)
    assert [e["step"] for e in read_train_log(path)] == [2, 4, 6, 8]  # step 9 (after the checkpoint) dropped
    _log(path, range(9, 13), every=2, per_epoch=4, log=resumed)
    steps = [e["step"] for e in read_train_log(path)]
    assert steps == [2, 4, 6, 8, 10, 12] and len(steps) == len(set(steps))


def test_a_new_run_starts_an_empty_log(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text(json.dumps({"step": 5, "loss": 1.0}) + "\n")
    TrainLog(path, 1)
    assert read_train_log(path) == []


def test_stages_continue_the_step_count(tmp_path):
    log = TrainLog(tmp_path / "log.jsonl", 1)
    for name in ("step1_rpn", "step2_detector"):
        log.stage(name)
        for it in (1, 2):
            log(it, LOSSES, lr=0.1, images=1, epoch=1, epoch_end=it == 2)
    entries = read_train_log(tmp_path / "log.jsonl")
    assert [(e["step"], e["stage"]) for e in entries] == [
        (1, "step1_rpn"), (2, "step1_rpn"), (3, "step2_detector"), (4, "step2_detector")]


def test_torn_last_line_is_skipped(tmp_path):
    path = tmp_path / "log.jsonl"
    path.write_text(json.dumps({"step": 1, "loss": 1.0}) + "\n" + '{"step": 2, "lo')
    assert [e["step"] for e in read_train_log(path)] == [1]


@pytest.mark.slow
def test_run_and_resume_write_one_log_without_duplicates(tmp_path):
    """A 2-epoch run, and a 1-epoch run resumed to 2 epochs (with a stale entry after its checkpoint),
    log the same steps with the same losses."""
    args = [*TINY_RUN, "--set", "train.log_every=2", "--set", "train.lr_steps="]  # no decay: same schedule
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert runner.invoke(app, ["run", "--results", str(straight), *args, "--epochs", "2"]).exit_code == 0
    first = runner.invoke(app, ["run", "--results", str(split), *args, "--epochs", "1"])
    assert first.exit_code == 0, first.output
    (run_id,) = [p.name for p in split.iterdir() if p.is_dir()]
    log_path = split / run_id / TRAIN_LOG_FILE
    with log_path.open("a") as f:  # as if the process died after a step past the checkpoint
        f.write(json.dumps({"step": 4, "stage": "train", "loss": 99.0, "losses": {}}) + "\n")
    again = runner.invoke(app, ["run", "--results", str(split), *args, "--epochs", "2", "--resume", run_id])
    assert again.exit_code == 0, again.output
    (ref_id,) = [p.name for p in straight.iterdir() if p.is_dir()]
    ref = read_train_log(straight / ref_id / TRAIN_LOG_FILE)
    got = read_train_log(log_path)
    assert [e["step"] for e in got] == [e["step"] for e in ref] == [2, 3, 4, 6]  # 3 steps an epoch, every 2
    assert [e["losses"] for e in got] == [e["losses"] for e in ref]  # bit-identical resume
    record = json.loads((split / "runs.jsonl").read_text().splitlines()[-1])
    assert record["train_log"] == {"file": TRAIN_LOG_FILE, "every": 2}


@pytest.mark.slow
@pytest.mark.parametrize(("detector", "scheme", "stages"), [
    ("faster", "alternating", ["step1_rpn", "step2_detector", "step3_rpn_shared", "step4_detector_shared"]),
    ("fast", "stagewise", ["stage1_classification", "stage2_box_regression"]),
])
def test_multi_stage_schemes_log_every_stage(tmp_path, detector, scheme, stages):
    extra = ["--set", "proposals.cache_dir=" + str(tmp_path / "cache"), "--set", "proposals.workers=0",
             "--set", "proposals.max_proposals=100"] if detector == "fast" else []
    result = runner.invoke(app, ["run", "--detector", detector, "--results", str(tmp_path), *TINY_RUN, *extra,
                                 "--epochs", "1", "--set", f"train.scheme={scheme}", "--set", "train.log_every=1"])
    assert result.exit_code == 0, result.output
    (run_dir,) = [p for p in tmp_path.iterdir() if p.is_dir() and p.name != "cache"]
    entries = read_train_log(run_dir / TRAIN_LOG_FILE)
    assert [e["step"] for e in entries] == list(range(1, 3 * len(stages) + 1))  # 3 steps a stage, counted on
    assert [e["stage"] for e in entries] == [s for s in stages for _ in range(3)]


def test_missing_tensorboard_is_a_clear_error_before_training(tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_tensorboard(name, *args, **kwargs):
        if name.startswith(("torch.utils.tensorboard", "tensorboard")):
            raise ImportError("No module named 'tensorboard'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    with pytest.raises(ConfigError, match="pip install"):
        tensorboard_writer_class()
    result = runner.invoke(app, ["run", "--results", str(tmp_path), *TINY_RUN, "--tensorboard", str(tmp_path / "tb")])
    assert result.exit_code == 2
    assert "error:" in result.output and "pip install 'rcnn-harness[tensorboard]'" in result.output
    assert not (tmp_path / "runs.jsonl").exists()  # refused before any work


def test_tensorboard_scalars(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    tb = tmp_path / "tb"
    result = runner.invoke(app, ["run", "--results", str(tmp_path), *TINY_RUN, "--epochs", "1",
                                 "--set", "train.log_every=1", "--tensorboard", str(tb)])
    assert result.exit_code == 0, result.output
    (run_dir,) = list(tb.iterdir())
    events = EventAccumulator(str(run_dir))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert {"loss/total", "loss/loss_cls", "loss/loss_rpn_cls", "lr", "images_per_s"} <= tags
    assert [s.step for s in events.Scalars("loss/total")] == [1, 2, 3]
    log = read_train_log(tmp_path / run_dir.name / TRAIN_LOG_FILE)
    assert [s.value for s in events.Scalars("loss/total")] == pytest.approx([e["loss"] for e in log])


def test_a_resumed_first_stage_counts_from_the_checkpoint(tmp_path):
    """R-CNN's fine-tuning is its first (and only logged) stage: resumed, its loop counts on from the checkpoint."""
    path = tmp_path / "log.jsonl"
    _log(path, range(1, 6), every=1, per_epoch=5, log=TrainLog(path, 1).stage("finetune"))
    log = TrainLog(path, 1, resume_step=5).stage("finetune")
    log(6, LOSSES, lr=0.1, images=1, epoch=2)
    assert [e["step"] for e in read_train_log(path)] == [1, 2, 3, 4, 5, 6]
