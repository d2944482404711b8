"""harness bench-scaling: the three scaling curves land in one bench record."""
import json

import pytest
import torch
from typer.testing import CliRunner

from harness.bench.scaling import run_scaling_bench
from harness.cli import app
from harness.config import build_config

SMALL = ["data.min_size=96", "data.max_size=128", "data.synthetic.test_images=2", "rcnn.crop_size=32",
         "rcnn.max_proposals_train=40", "proposals.max_proposals=40", "test.warmup_images=1"]


@pytest.mark.slow
def test_scaling_record_has_every_curve():
    base = build_config(overrides={"data.min_size": 96, "data.max_size": 128, "data.synthetic.test_images": 2,
                                   "rcnn.crop_size": 32})
    record = run_scaling_bench(base, device=torch.device("cpu"), counts=(20, 80), sizes=(96, 160),
                               rcnn_images=(2, 4), images=1, repeats=1, say=lambda _: None, sets=SMALL)
    for detector in ("fast", "rcnn"):
        curve = record["test_time_vs_proposals"][detector]
        assert [p["proposals"] for p in curve] == [20, 80]
        assert all(p["s_per_img"] > 0 and p["samples"] == 1 for p in curve)
    ratios = record["rcnn_over_fast"]
    assert [r["proposals"] for r in ratios] == [20, 80]
    assert all(r["time_ratio"] > 0 and r["flop_ratio"] > 1 for r in ratios)  # a CNN per crop costs more
    assert ratios[1]["flop_ratio"] != ratios[0]["flop_ratio"]
    sizes = record["faster_time_vs_image_size"]
    assert [min(p["image_size"]) for p in sizes] == [96, 160]
    disk = record["rcnn_disk_vs_images"]
    assert [p["train_images"] for p in disk] == [2, 4]
    assert 0 < disk[0]["feature_cache_bytes"] < disk[1]["feature_cache_bytes"]
    assert all(p["peak_rss_bytes"] > 0 for p in disk)
    assert record["rcnn_growth"]["images_ratio"] == 2.0
    assert record["init"] == "random" and record["backbone"] == "tiny"


def test_bench_scaling_command_appends_record_and_rejects_bad_lists(tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["bench-scaling", "--proposals", "20", "--sizes", "96", "--rcnn-images", "",
                                 "--images", "1", "--repeats", "1", "--results", str(tmp_path),
                                 *[a for s in SMALL for a in ("--set", s)]])
    assert result.exit_code == 0, result.output
    (line,) = (tmp_path / "bench.jsonl").read_text().splitlines()
    record = json.loads(line)
    assert record["kind"] == "scaling" and "rcnn_disk_vs_images" not in record
    assert record["device"]["type"] == "cpu"
    bad = runner.invoke(app, ["bench-scaling", "--proposals", "ten", "--results", str(tmp_path)])
    assert bad.exit_code == 2
