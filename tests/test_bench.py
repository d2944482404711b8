"""harness bench on a tiny case: both models build, run, and the record holds the ratios."""
import json
import math

import pytest
import torch
from typer.testing import CliRunner

from harness.bench.faster import _summarise_seeds, fresh_models
from harness.cli import app
from harness.config import build_config
from harness.evaluation.flops import count_stage_flops

TINY = ["--set", "data.synthetic.train_images=2", "--set", "data.synthetic.test_images=2",
        "--set", "data.min_size=96", "--set", "data.max_size=128"]


def test_torchvision_twin_matches_our_settings():
    cfg = build_config()
    models = fresh_models(cfg, 3, (96, 96))
    tv = models["torchvision"].model
    assert tv.rpn.anchor_generator.num_anchors_per_location() == [9]
    assert tv.rpn._post_nms_top_n["testing"] == cfg.model.rpn_post_nms_top_n_test
    assert tv.roi_heads.fg_bg_sampler.batch_size_per_image == cfg.model.roi_batch_size
    # same seed, same architecture: the two bodies start from the same weights
    ours_w = next(models["ours"].body.parameters())
    tv_w = next(tv.backbone.parameters())
    assert torch.equal(ours_w, tv_w)
    for m in models.values():
        m.eval()
        with torch.no_grad():
            (out,) = m([torch.rand(3, 96, 96)])
        assert set(out) == {"boxes", "labels", "scores"}


def test_flops_split_by_stage():
    model = fresh_models(build_config(), 3, (96, 96))["ours"]
    flops = count_stage_flops(model, torch.rand(3, 96, 96))
    assert flops["backbone"] > 0 and flops["head"] > 0 and flops["proposals"] > 0
    assert flops["total"] == flops["backbone"] + flops["proposals"] + flops["head"] + flops["postprocess"]


def test_flops_do_not_depend_on_the_pooler():
    """RoI pooling counts as 0 with either pooler (RoI Align's sparse product is not counted as dense)."""
    models = fresh_models(build_config(), 3, (96, 96))
    image = torch.rand(3, 96, 96)
    assert count_stage_flops(models["ours"], image) == count_stage_flops(models["ours_roi_align"], image)


@pytest.mark.slow
def test_bench_cli_records_ratios(tmp_path):
    result = CliRunner().invoke(app, ["bench", "--images", "2", "--iters", "1", "--results", str(tmp_path), *TINY])
    assert result.exit_code == 0, result.output
    rec = json.loads((tmp_path / "bench.jsonl").read_text().splitlines()[0])
    for key in ("inference_throughput_ours_over_torchvision", "training_throughput_ours_over_torchvision",
                "eval_time_over_backbone_time"):
        assert rec["ratios"][key] > 0
    assert rec["device"]["type"] == "cpu" and rec["git_sha"] is not None
    # the truncated-SVD head (test time only) is timed beside it, with fewer head FLOPs
    assert rec["speed"]["ours_svd"]["infer_s_per_img"] > 0 and "train_s_per_iter" not in rec["speed"]["ours_svd"]
    assert rec["ratios"]["eval_time_over_backbone_time_svd"] > 0 and rec["svd_ranks"] == [64, 16]
    assert rec["flops_per_image_svd"]["head"] < rec["flops_per_image"]["head"]
    assert rec["flops_per_image_svd"]["backbone"] == rec["flops_per_image"]["backbone"]


def test_bench_takes_the_paper_profile(tmp_path):
    # the profile's anchors and backbone, unless --backbone says otherwise; sizes kept small by --set
    result = CliRunner().invoke(app, ["bench", "--profile", "paper", "--backbone", "tiny", "--images", "1",
                                      "--iters", "1", "--results", str(tmp_path), *TINY])
    assert result.exit_code == 0, result.output
    rec = json.loads((tmp_path / "bench.jsonl").read_text().splitlines()[0])
    assert rec["config"]["profile"] == "paper" and rec["config"]["model"]["backbone"] == "tiny"
    assert rec["config"]["model"]["anchor_sizes"] == [128.0, 256.0, 512.0]
    assert "tiny, random init" in result.output


@pytest.mark.slow
def test_bench_accuracy_over_seeds(tmp_path):
    result = CliRunner().invoke(app, ["bench", "--images", "1", "--iters", "1", "--accuracy-epochs", "1",
                                      "--accuracy-seeds", "2", "--results", str(tmp_path), *TINY])
    assert result.exit_code == 0, result.output
    acc = json.loads((tmp_path / "bench.jsonl").read_text().splitlines()[0])["accuracy"]
    assert acc["seeds"] == [0, 1] and [r["seed"] for r in acc["per_seed"]] == [0, 1]
    diffs = [r["map50_area_difference_points"] for r in acc["per_seed"]]
    assert acc["map50_area_difference_points"] == sum(diffs) / 2
    # two seeds: the sample standard deviation is |d0 - d1| / sqrt(2)
    assert acc["map50_area_difference_points_std"] == pytest.approx(abs(diffs[0] - diffs[1]) / math.sqrt(2))
    assert f"{acc['map50_area_difference_points']:+.1f} ± {acc['map50_area_difference_points_std']:.1f}" in result.output


def test_accuracy_over_seeds_is_mean_and_sample_sd():
    def seed_run(seed, ours, theirs):
        return {"seed": seed, "epochs": 3, "ours": {"map50_area": ours, "train_s": 1.0 + seed},
                "torchvision": {"map50_area": theirs, "train_s": 2.0}, "map50_area_difference_points": 100 * (ours - theirs)}

    runs = [seed_run(0, 0.50, 0.48), seed_run(1, 0.60, 0.54), seed_run(2, 0.40, 0.33)]  # differences 2, 6, 7 points
    acc = _summarise_seeds(runs)
    assert acc["seeds"] == [0, 1, 2] and acc["per_seed"] == runs and acc["epochs"] == 3
    assert acc["map50_area_difference_points"] == pytest.approx(5.0)
    assert acc["map50_area_difference_points_std"] == pytest.approx(math.sqrt((9 + 1 + 4) / 2))  # n - 1 = 2
    assert acc["ours"] == pytest.approx({"map50_area": 0.5, "train_s": 2.0})
    assert acc["torchvision"] == pytest.approx({"map50_area": 0.45, "train_s": 2.0})
    assert _summarise_seeds(runs[:1]) == runs[0]  # one seed: no spread to report
