"""harness sweep: grid expansion, validation, and resuming without repeating finished runs."""
import json

import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.config import ConfigError
from harness.config.sweep import config_hash, expand, parse_grid
from harness.run.sweep import run_sweep

TINY = ["--set", "data.synthetic.train_images=2", "--set", "data.synthetic.test_images=1",
        "--set", "data.min_size=64", "--set", "data.max_size=96", "--set", "train.epochs=1",
        "--set", "test.warmup_images=0", "--set", "test.recall_counts=10"]


def test_grid_parsing_and_expansion():
    grid = parse_grid(["train.lr=0.01,0.02", "model.anchor_sizes=32,64;64,128"])
    assert grid == {"train.lr": ["0.01", "0.02"], "model.anchor_sizes": ["32,64", "64,128"]}
    assert parse_grid(["model.anchor_sizes=32,64"]) == {"model.anchor_sizes": ["32,64"]}
    points = expand("faster", grid, seeds=2)
    assert len(points) == 8 and len({p.key for p in points}) == 8
    assert {p.config.model.anchor_sizes for p in points} == {(32.0, 64.0), (64.0, 128.0)}


@pytest.mark.parametrize("item", ["train.lrr=1,2", "train.lr", "seed=1,2", "train.epochs=a,b"])
def test_bad_grid_is_a_config_error(item):
    with pytest.raises(ConfigError):
        expand("faster", parse_grid([item]), seeds=1)


def test_interrupted_sweep_resumes_without_repeating(tmp_path):
    points = expand("faster", parse_grid(["train.lr=0.01,0.02,0.03"]), seeds=1)
    ran = []

    def fake_execute(cfg):
        if len(ran) == 2:
            raise KeyboardInterrupt
        ran.append(cfg.train.lr)
        rec = {"status": "ok", "config": json.loads(json.dumps(__import__("dataclasses").asdict(cfg)))}
        with (tmp_path / "runs.jsonl").open("a") as f:
            f.write(json.dumps(rec) + "\n")

    with pytest.raises(KeyboardInterrupt):
        run_sweep(points, results_dir=tmp_path, execute=fake_execute, say=lambda m: None)
    assert ran == [0.01, 0.02]
    ran.append("resumed")
    counts = run_sweep(points, results_dir=tmp_path, execute=lambda cfg: ran.append(cfg.train.lr), say=lambda m: None)
    assert counts == {"ran": 1, "skipped": 2, "failed": 0}
    assert ran == [0.01, 0.02, "resumed", 0.03]


def test_config_hash_is_stable_through_json():
    point = expand("faster", {}, seeds=1)[0]
    stored = json.loads(json.dumps(__import__("dataclasses").asdict(point.config)))
    assert config_hash(stored) == config_hash(point.config)


def test_sweep_cli_end_to_end_and_resume(tmp_path):
    runner = CliRunner()
    args = ["sweep", "--grid", "model.box_weight=1,2", "--results", str(tmp_path), *TINY]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    records = [json.loads(x) for x in (tmp_path / "runs.jsonl").read_text().splitlines()]
    assert [r["config"]["model"]["box_weight"] for r in records] == [1.0, 2.0]
    result = runner.invoke(app, args)
    assert "0 ran, 2 skipped" in result.output
    assert len((tmp_path / "runs.jsonl").read_text().splitlines()) == 2
    result = runner.invoke(app, [*args, "--dry-run"])
    assert result.output.count("done") == 2


def test_a_run_that_sets_threads_gives_the_process_its_count_back(tmp_path, tiny_run_args):
    """`threads` is one run's setting: the next point of a sweep (or the next test) in the same process runs
    with the process's own thread count, not the last run's (a leak made bit-exact resume tests compare runs
    made with 1 and with 2 threads)."""
    import torch

    before = torch.get_num_threads()
    wanted = 1 if before != 1 else 2
    result = CliRunner().invoke(app, ["run", "--detector", "faster", *tiny_run_args, "--set", f"threads={wanted}",
                                      "--results", str(tmp_path)])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "runs.jsonl").read_text().splitlines()[-1])
    assert record["device"]["threads"] == wanted  # the run itself ran with its own count
    assert torch.get_num_threads() == before
