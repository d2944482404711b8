"""``harness run --detector rcnn`` and ``harness bench-rcnn`` end to end, on a tiny synthetic set."""
import json

import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.run.schema import record_problems

runner = CliRunner()


def _tiny(tmp_path, tiny_run_args):
    return [
        *tiny_run_args,
        "--set", "rcnn.crop_size=32",
        "--set", "rcnn.max_proposals_train=60",
        "--set", "rcnn.max_proposals_test=60",
        "--set", f"rcnn.cache_dir={tmp_path / 'features'}",
        "--set", f"proposals.cache_dir={tmp_path / 'proposals'}",
        "--set", "proposals.workers=1",
    ]


@pytest.mark.slow
def test_rcnn_run_records_stages_and_disk_and_reuses_its_cache(tmp_path, tiny_run_args):
    results = tmp_path / "results"
    for _ in range(2):
        result = runner.invoke(app, ["run", "--detector", "rcnn", "--results", str(results), *_tiny(tmp_path, tiny_run_args)])
        assert result.exit_code == 0, result.output
    first, second = (json.loads(line) for line in (results / "runs.jsonl").read_text().splitlines())
    for rec in (first, second):
        assert rec["status"] == "ok" and rec["detector"] == "rcnn"
        assert record_problems(rec) == []  # every key R-CNN's stages write is in the one schema
        assert rec["metrics"]["map50_voc07"] is not None
        assert set(rec["metrics"]["per_class"]) == {"disc", "box", "triangle"}
        timing = rec["timing"]
        assert set(timing["train_stages"]) == {"finetune", "features", "svm", "bbox_reg"}
        assert set(timing["stages"]) == {"proposals", "warp", "cnn", "classifier", "nms"}
        assert rec["disk"]["bytes"] > 0 and rec["disk"]["items"]["feature_cache"] > 0
        assert rec["disk"]["extrapolated"]["to"] == "VOC07 trainval: 5011 images x 2000 proposals"
        assert rec["disk"]["extrapolated"]["bytes"] == 5011 * 2000 * 256 * 4
        assert rec["rcnn"]["cpu_reductions"]["crop_size"] == {"used": 32, "paper": 224}
        assert "selective_search" in rec["metrics"]["proposal_recall"]
    # same seed, same fine-tuned weights: the second run reads the first run's features
    assert first["disk"]["written_bytes"] == first["disk"]["bytes"]
    assert second["disk"]["written_bytes"] == 0 and second["disk"]["feature_cache"]["entries_reused"] == 4
    assert second["disk"]["bytes"] == first["disk"]["bytes"]
    assert second["metrics"]["map50_voc07"] == first["metrics"]["map50_voc07"]
    # the second run did not fine-tune again: it loaded the first one's network (and reports its measured time)
    assert first["rcnn"]["finetune_store"]["reused"] is False and second["rcnn"]["finetune_store"]["reused"] is True
    assert second["timing"]["train_stages"]["finetune"] == first["timing"]["train_stages"]["finetune"]


def test_faster_rcnn_records_no_feature_cache(tmp_path):
    args = ["run", "--detector", "faster", "--results", str(tmp_path), "--epochs", "1",
            "--set", "data.synthetic.train_images=2", "--set", "data.synthetic.test_images=1",
            "--set", "data.min_size=64", "--set", "data.max_size=96", "--set", "test.warmup_images=0"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    rec = json.loads((tmp_path / "runs.jsonl").read_text())
    assert rec["disk"]["bytes"] == 0 and "feature_cache" not in rec["disk"]["items"]


def test_bad_rcnn_settings_exit_2(tmp_path):
    for setting, message in (("rcnn.feature_layer=fc9", "rcnn.feature_layer"),
                             ("rcnn.cache_dtype=int8", "rcnn.cache_dtype")):
        result = runner.invoke(app, ["run", "--detector", "rcnn", "--results", str(tmp_path), "--set", setting])
        assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output


def test_bench_rcnn_appends_a_record(tmp_path):
    result = runner.invoke(app, ["bench-rcnn", "--results", str(tmp_path), "--crops", "16", "--repeats", "1",
                                 "--set", "rcnn.crop_size=32", "--set", "rcnn.batch_size=8"])
    assert result.exit_code == 0, result.output
    rec = json.loads((tmp_path / "bench.jsonl").read_text())
    assert rec["bench"] == "rcnn_cnn_stage" and rec["crop_size"] == 32 and rec["target"] == 0.9
    assert rec["raw_crops_per_s"] > 0 and rec["rcnn_crops_per_s"] > 0 and 0 < rec["fraction"]
    assert rec["device"]["type"] == "cpu" and "fraction" in result.output
