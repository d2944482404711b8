"""Multi-process training under torchrun (gloo, 2 CPU processes): DDP keeps the ranks identical,
each rank trains on its own shard, and only rank 0 writes the run record."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

HELPER = Path(__file__).parent / "helpers" / "ddp_train.py"
REPO = Path(__file__).resolve().parents[1]


def torchrun(*args: str, cwd: Path, timeout: int = 240) -> subprocess.CompletedProcess:
    # The workers import this checkout's packages whether or not it is pip-installed (they run in tmp_path).
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "PYTHONPATH": path}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]
    # --standalone: a local rendezvous on a free port (parallel CI jobs must not collide).
    # Own session: on a timeout the whole group (torchrun and its workers) is killed, no orphans left.
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"torchrun did not finish in {timeout} s:\n{err[-3000:]}")
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


@pytest.mark.parametrize("detector", ["faster", "fast"])
@pytest.mark.slow
def test_ddp_ranks_keep_identical_parameters(tmp_path, detector):
    done = torchrun(str(HELPER), detector, str(tmp_path), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    # the ranks started from different random weights; DDP broadcast rank 0's, then averaged gradients
    assert any(not torch.equal(r0["initial"][k], r1["initial"][k]) for k in r0["initial"])
    for name, value in r0["final"].items():
        assert torch.equal(value, r1["final"][name]), f"{name} differs across ranks"
    trained = [k for k, v in r0["final"].items() if v.is_floating_point() and not torch.equal(v, r0["initial"][k])]
    assert trained, "training changed no parameter"
    # 8 images, 2 ranks, 2 per batch: 2 steps per epoch per rank, disjoint shards covering the set
    assert r0["iterations"] == r1["iterations"] == 4
    for epoch in range(2):
        a, b = r0["seen"][4 * epoch:4 * epoch + 4], r1["seen"][4 * epoch:4 * epoch + 4]
        assert not set(a) & set(b) and sorted(a + b) == list(range(8))
    # the checkpoint (rank 0 writes it) holds each rank's RNG state, so each resumes its own stream
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert [torch.equal(s["torch"], r["rng"]["torch"]) for s, r in zip(ckpt["rng_ranks"], (r0, r1))] == [True, True]
    assert torch.equal(ckpt["rng"]["torch"], r0["rng"]["torch"])


@pytest.mark.slow
def test_torchrun_harness_run_records_once(tmp_path, tiny_run_args):
    done = torchrun("-m", "harness", "run", "--detector", "faster", *tiny_run_args,
                    "--set", "data.synthetic.train_images=8", "--results", str(tmp_path / "r"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = (tmp_path / "r" / "runs.jsonl").read_text().splitlines()
    assert len(lines) == 1, "only rank 0 appends the record"
    record = json.loads(lines[0])
    assert record["status"] == "ok"
    assert record["distributed"] == {"world_size": 2, "backend": "gloo"}
    assert record["timing"]["train_iters"] == 2  # 8 images / 2 ranks / 2 per batch, one epoch
    assert len(list((tmp_path / "r").glob("*/checkpoint.pt"))) == 1
    assert done.stdout.count("record appended") + done.stderr.count("record appended") == 1


@pytest.mark.slow
def test_torchrun_pretrains_once_on_rank_0(tmp_path, tiny_run_args, monkeypatch):
    """With model.init=pretrained and an empty cache, rank 0 alone pre-trains; the other rank waits and loads
    the same file (without the barrier both ranks would train it, and both would say so)."""
    monkeypatch.setenv("HARNESS_PRETRAIN_CACHE", str(tmp_path / "pretrained"))  # conftest's tiny recipe, fresh
    done = torchrun("-m", "harness", "run", "--detector", "faster", *tiny_run_args, "--set", "model.init=pretrained",
                    "--set", "data.synthetic.train_images=8", "--results", str(tmp_path / "r"), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (done.stdout + done.stderr).count("pre-training tiny once") == 1
    assert len(list((tmp_path / "pretrained").glob("tiny-*.pt"))) == 1
    record = json.loads((tmp_path / "r" / "runs.jsonl").read_text())
    assert record["status"] == "ok" and record["init"]["kind"] == "pretrained"


@pytest.mark.slow
def test_peer_rank_failure_is_recorded_by_rank_0(tmp_path, tiny_run_args):
    helper = Path(__file__).parent / "helpers" / "ddp_peer_fails.py"
    results = tmp_path / "r"
    done = torchrun(str(helper), "run", "--detector", "faster", *tiny_run_args,
                    "--set", "data.synthetic.train_images=8", "--results", str(results), cwd=tmp_path)
    assert done.returncode != 0
    lines = (results / "runs.jsonl").read_text().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    # rank 0 was stopped by torchrun (or its collective broke); the record names the real cause
    assert record["status"] == "failed"
    assert record["reason"].startswith("rank 1: ValueError: boom on rank 1"), record["reason"]
    assert "rank 0:" in record["reason"]
    assert not (results / ".rank_failures").exists(), "the error files are removed once read"


def test_peer_failures_ignore_other_launches_and_stale_files(tmp_path, monkeypatch):
    import time

    from harness.run import distributed

    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "old-launch")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    distributed.report_failure(tmp_path, RuntimeError("from an earlier launch"))
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "this-launch")
    distributed.report_failure(tmp_path, KeyError("stale"))
    stale = next((tmp_path / distributed.FAILURES_DIR).glob("this-launch.rank1.txt"))
    os.utime(stale, (time.time() - 3600, time.time() - 3600))
    assert distributed.peer_failures(tmp_path, since=time.time()) == []
    monkeypatch.setenv("RANK", "3")
    distributed.report_failure(tmp_path, OSError("disk full"))
    monkeypatch.setenv("RANK", "2")
    distributed.report_failure(tmp_path, ValueError("bad"))
    assert distributed.peer_failures(tmp_path, since=time.time() - 5) == [
        "rank 2: ValueError: bad", "rank 3: OSError: disk full"]
    # the other launch's file is left alone
    assert [p.name for p in (tmp_path / distributed.FAILURES_DIR).iterdir()] == ["old-launch.rank1.txt"]


@pytest.mark.slow
def test_torchrun_refuses_rcnn_clearly(tmp_path, tiny_run_args):
    done = torchrun("-m", "harness", "run", "--detector", "rcnn", *tiny_run_args, "--results", str(tmp_path / "r"),
                    cwd=tmp_path)
    assert done.returncode != 0
    assert "torchrun" in done.stderr and "R-CNN" in done.stderr
    assert not (tmp_path / "r" / "runs.jsonl").exists()


def test_resume_refuses_another_number_of_processes():
    from harness.config import ConfigError
    from harness.train.engine import TrainResult, _restore

    state = {"world_size": 2, "model": {}, "optimizer": {}, "scheduler": {}, "epoch": 1, "iterations": 1, "rng": {}}
    with pytest.raises(ConfigError, match="2 process"):
        _restore(state, torch.nn.Linear(1, 1), None, None, TrainResult())


def test_resume_gives_each_rank_its_own_rng(monkeypatch):
    from harness.run import distributed
    from harness.run.seeding import rng_state
    from harness.train.engine import TrainResult, _restore

    model = torch.nn.Linear(1, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda _: 1.0)
    states = []
    for seed in (10, 11):
        torch.manual_seed(seed)
        states.append(rng_state())
    state = {"world_size": 2, "model": model.state_dict(), "optimizer": opt.state_dict(),
             "scheduler": sched.state_dict(), "epoch": 1, "iterations": 2, "rng": states[0], "rng_ranks": states}
    monkeypatch.setattr(distributed, "current", lambda: distributed.DistInfo(rank=1, world_size=2))
    _restore(state, model, opt, sched, TrainResult())
    assert torch.equal(torch.get_rng_state(), states[1]["torch"])
