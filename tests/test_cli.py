"""The CLI end to end through typer's CliRunner, on a tiny configuration."""
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.run.schema import record_problems

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
runner = CliRunner()


def test_run_writes_a_valid_record(tmp_path, tiny_run_args):
    result = runner.invoke(app, ["run", "--detector", "faster", "--results", str(tmp_path), *tiny_run_args])
    assert result.exit_code == 0, result.output
    lines = (tmp_path / "runs.jsonl").read_text().splitlines()
    assert len(lines) == 1
    rec = json.loads(lines[0])
    assert rec["status"] == "ok" and rec["schema_version"] == 1 and rec["detector"] == "faster"
    assert record_problems(rec) == []  # every key the runner writes is in the one schema
    for key in ("run_id", "config", "git_sha", "versions", "device", "metrics", "timing", "memory", "disk",
                "started", "finished", "init", "profile", "seed", "dataset", "backbone"):
        assert key in rec
    assert rec["init"] == "random" and rec["config"]["data"]["min_size"] == 96
    assert set(rec["versions"]) >= {"python", "torch", "torchvision", "opencv", "numpy"}
    for key in ("map50_voc07", "map50_area", "coco_ap", "coco_ap50", "per_class"):
        assert key in rec["metrics"]
    assert set(rec["metrics"]["per_class"]) == {"disc", "box", "triangle"}
    timing = rec["timing"]
    assert timing["train_s"] > 0 and timing["test_images"] == 2
    assert timing["test_s_per_img"]["median"] > 0 and timing["test_s_per_img"]["p90"] >= timing["test_s_per_img"]["median"]
    assert set(timing["stages"]) == {"backbone", "proposals", "head", "postprocess"}
    assert rec["memory"]["peak_rss_bytes"] > 0
    assert rec["flops"]["backbone"] > 0 and rec["flops"]["head"] > 0
    assert rec["flops"]["total"] == sum(v for k, v in rec["flops"].items() if k != "total")
    assert (tmp_path / rec["run_id"] / "checkpoint.pt").is_file()
    assert (tmp_path / rec["run_id"] / "detections.json").is_file()
    assert "mAP50" in result.output  # the summary table


@pytest.mark.parametrize(
    "args, message",
    [
        (["--detector", "yolo"], "yolo"),
        (["--dataset", "imagenet:/x"], "imagenet"),
        (["--dataset", "voc:/no/such/dir"], "/no/such/dir"),
        (["--backbone", "alexnet"], "alexnet"),
        (["--set", "train.lrr=1"], "unknown config key"),
        (["--set", "train.epochs=abc"], "expected int"),
        (["--weights", "/no/such/weights.pth"], "weights file not found"),
    ],
)
def test_bad_input_exits_2_with_a_clear_message(tmp_path, args, message):
    result = runner.invoke(app, ["run", "--results", str(tmp_path), *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


@pytest.mark.slow
def test_datasets_describes_synthetic():
    result = runner.invoke(app, ["datasets", "synthetic"])
    assert result.exit_code == 0, result.output
    for word in ("train", "test", "disc", "box", "triangle"):
        assert word in result.output


@pytest.mark.skipif(not (SHARED / "bccd").is_dir(), reason="shared BCCD data not present")
def test_datasets_describes_bccd():
    result = runner.invoke(app, ["datasets", f"voc:{SHARED / 'bccd'}"])
    assert result.exit_code == 0, result.output
    for word in ("RBC", "WBC", "Platelets", "trainval", "test"):
        assert word in result.output


def test_config_lists_keys():
    result = runner.invoke(app, ["config"])
    assert result.exit_code == 0 and "model.anchor_sizes" in result.output
