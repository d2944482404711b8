"""Fast R-CNN: the two-stage detector on precomputed proposals; forwards, overfit, CLI end to end."""
import json
import re

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from detectors.proposals import PrecomputedProposals
from detectors.selective_search import SelectiveSearchParams, selective_search
from harness.cli import app
from harness.config import ConfigError, build_config
from harness.data import SyntheticConfig, build_dataset, training_target
from harness.evaluation.detection import evaluate_detections
from harness.run.builder import build_model

runner = CliRunner()
TINY = [
    "--epochs", "1",
    "--set", "data.synthetic.train_images=4",
    "--set", "data.synthetic.test_images=2",
    "--set", "data.synthetic.image_size=96",
    "--set", "data.min_size=96",
    "--set", "data.max_size=128",
    "--set", "test.warmup_images=1",
    "--set", "proposals.max_proposals=300",
]


def _targets():
    return [
        {"boxes": torch.tensor([[10.0, 20.0, 80.0, 90.0]]), "labels": torch.tensor([1]),
         "proposals": torch.tensor([[12.0, 18.0, 82.0, 88.0], [0.0, 0.0, 50.0, 50.0], [100.0, 100.0, 150.0, 150.0]])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),  # no objects
         "proposals": torch.tensor([[5.0, 5.0, 60.0, 60.0]])},
    ]


def test_fast_defaults_and_bad_proposal_keys():
    cfg = build_config(detector="fast")
    assert cfg.model.roi_batch_size == 64 and cfg.test.svd and cfg.proposals.max_proposals == 2000
    # one RoI batch for Fast and Faster R-CNN (2 images x 64 = 128 per mini-batch): only the proposals differ
    assert build_config().model.roi_batch_size == 64 and not build_config().test.svd
    assert build_config(detector="fast", overrides={"model.roi_batch_size": 32}).model.roi_batch_size == 32
    with pytest.raises(ConfigError, match="proposals.file"):
        build_config(detector="fast", overrides={"proposals.source": "file"})
    with pytest.raises(ConfigError, match="proposals.mode"):
        build_config(detector="fast", overrides={"proposals.mode": "slow"})


def test_train_and_eval_forward_on_precomputed_proposals():
    torch.manual_seed(0)
    model = build_model(build_config(detector="fast"), num_classes=3)
    assert isinstance(model.proposal_source, PrecomputedProposals)
    images = [torch.rand(3, 160, 192), torch.rand(3, 192, 160)]
    model.train()
    losses = model(images, _targets())
    assert set(losses) == {"loss_cls", "loss_box"}  # no RPN losses
    sum(losses.values()).backward()
    model.eval()
    with torch.no_grad():
        out = model(images, [{"proposals": t["proposals"]} for t in _targets()])
    assert len(out) == 2 and all(set(o) == {"boxes", "labels", "scores"} for o in out)
    with pytest.raises(ValueError, match="proposals"):
        model(images)  # proposals are required


def test_classification_only_trains_no_box_loss_and_tests_on_the_proposals():
    torch.manual_seed(0)
    model = build_model(build_config(detector="fast", overrides={"model.cls_only": True}), num_classes=3)
    images = [torch.rand(3, 160, 192), torch.rand(3, 192, 160)]
    model.train()
    losses = model(images, _targets())
    assert float(losses["loss_box"].detach()) == 0.0
    model.eval()
    with torch.no_grad():
        (out,) = model(images[:1], [{"proposals": _targets()[0]["proposals"]}])
    proposals = _targets()[0]["proposals"]
    for box in out["boxes"]:  # every detection is one of the proposals, unmoved
        assert (box - proposals).abs().sum(dim=1).min() < 1e-4


@pytest.mark.slow
def test_overfits_one_synthetic_image_on_selective_search(overfit):
    """Fast R-CNN on the image's own selective-search proposals reaches mAP50 > 0.9 on it."""
    torch.manual_seed(0)
    synthetic = SyntheticConfig(train_images=1, val_images=1, test_images=1, seed=3)
    ds = build_dataset("synthetic", "train", min_size=192, max_size=320, synthetic=synthetic)
    ds.proposal_provider = lambda i, pixels: selective_search(pixels, SelectiveSearchParams(max_proposals=500))
    image, target = ds[0]
    model = build_model(build_config(detector="fast"), num_classes=3)
    model = overfit(model, image, training_target(target), 60)  # mAP50 is 1.0 after 25 steps with this seed
    with torch.no_grad():
        (pred,) = model([image], [{"proposals": target["proposals"]}])
    metrics = evaluate_detections([pred], [target], ds.class_names)
    assert metrics["map50_area"] > 0.9, metrics["per_class"]


@pytest.mark.slow
def test_cli_proposals_then_run_fast_writes_a_complete_record(tmp_path):
    cache = ["--set", f"proposals.cache_dir={tmp_path / 'cache'}"]
    pre = runner.invoke(app, ["proposals", "--dataset", "synthetic", "--workers", "2", *TINY[2:], *cache],
                        env={"COLUMNS": "200"})
    assert pre.exit_code == 0, pre.output
    # 4 train + 2 test images searched by the two workers, one cache entry each
    assert "6 images in" in pre.output and "with 2 worker processes" in pre.output, pre.output
    assert "cache: 6 entries" in pre.output, pre.output
    # each split's row: min / mean / max proposals per image (the benchmark's ">= 2000 per image" is a minimum)
    spread = {m[1]: (int(m[2]), int(m[3]), int(m[4]))
              for m in re.finditer(r"synthetic/(train|test)\s*│.*?│\s*(\d+) / (\d+) / (\d+)\s*│", pre.output)}
    assert set(spread) == {"train", "test"} and all(lo <= mean <= hi for lo, mean, hi in spread.values()), pre.output
    result = runner.invoke(app, ["run", "--detector", "fast", "--results", str(tmp_path), *TINY, *cache])
    assert result.exit_code == 0, result.output
    (line,) = (tmp_path / "runs.jsonl").read_text().splitlines()
    rec = json.loads(line)
    assert rec["status"] == "ok" and rec["detector"] == "fast"
    assert round(rec["proposals"]["precompute"]["train"]["proposals_per_image"]) == spread["train"][1]
    assert rec["config"]["model"]["roi_batch_size"] == 64
    assert {"map50_voc07", "map50_area", "coco_ap"} <= set(rec["metrics"])
    recall = rec["metrics"]["proposal_recall"]["selective_search"]
    assert recall["num_proposals"] == [10, 50, 100, 300, 1000, 2000]
    assert len(recall["recall@0.5"]) == 6 and len(recall["recall@0.7"]) == 6
    timing = rec["timing"]
    assert set(timing["stages"]) == {"backbone", "proposals", "head", "postprocess"}
    assert timing["test_s_per_img_without_proposals"]["median"] < timing["test_s_per_img"]["median"]
    # selective search re-timed on each test image, and identical to what the workers cached
    assert timing["proposal_time"]["source"].startswith("live")
    assert timing["proposal_time"]["live_differs_from_cache"] == 0
    # the second pass over the same images hits the cache: nothing is searched again
    assert timing["proposal_time"]["test_computed_this_run"] == 0
    assert rec["proposals"]["precompute"]["train"]["computed"] == 0
    assert rec["proposals"]["precompute"]["train"]["hits"] == 4 and timing["proposal_time"]["test_cache_hits"] == 2
    assert rec["disk"]["bytes"] == 0 and rec["disk"]["items"]["proposal_cache"] > 0
    assert rec["svd"]["applied"] and rec["svd"]["ranks"] == [64, 16]
    assert set(rec["svd"]["head_s_per_img"]) == {"without_svd", "with_svd"}
    assert rec["metrics_svd"]["map50_area"] is not None and "svd" in timing


def test_cli_run_fast_on_an_external_file(tmp_path):
    from harness.proposals.external import save_proposal_file

    boxes = {f"{split}/{i}": [[0, 0, 48, 48], [10, 10, 90, 90], [30, 20, 96, 80]]
             for split, n in (("train", 4), ("test", 2)) for i in range(n)}
    path = tmp_path / "props.json"
    save_proposal_file(path, boxes)
    args = ["run", "--detector", "fast", "--results", str(tmp_path), *TINY, "--set", "test.svd=false",
            "--set", "proposals.source=file", "--set", f"proposals.file={path}"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    rec = json.loads((tmp_path / "runs.jsonl").read_text().splitlines()[-1])
    assert rec["status"] == "ok" and "external" in rec["metrics"]["proposal_recall"]
    assert rec["proposals"]["source"] == "file" and rec["disk"]["items"] == {}


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--set", "proposals.source=file"], "proposals.file"),
        (["--set", "proposals.source=file", "--set", "proposals.file=/no/such.json"], "not found"),
        (["--set", "proposals.mode=slow"], "proposals.mode"),
    ],
)
def test_cli_bad_proposal_settings_exit_2(tmp_path, extra, message):
    result = runner.invoke(app, ["run", "--detector", "fast", "--results", str(tmp_path), *TINY, *extra])
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output


def test_cli_exported_proposals_run_without_selective_search(tmp_path, monkeypatch):
    """`proposals --export` writes the cached boxes as an external file; a run on it never searches."""
    import harness.proposals.precompute
    from harness.proposals.cache import ProposalCache, image_digest
    from harness.proposals.external import load_proposal_file
    from harness.proposals.stage import selective_search_params

    cache_dir = tmp_path / "cache"
    cache = ["--set", f"proposals.cache_dir={cache_dir}"]
    path = tmp_path / "out" / "ss.json"
    limited = runner.invoke(app, ["proposals", "--dataset", "synthetic", "--limit", "1", "--export", str(path),
                                  *TINY[2:], *cache])
    assert limited.exit_code != 0 and "--limit" in limited.output and not path.exists()
    pre = runner.invoke(app, ["proposals", "--dataset", "synthetic", "--workers", "0", "--export", str(path),
                              *TINY[2:], *cache])
    assert pre.exit_code == 0, pre.output
    loaded = load_proposal_file(path)
    assert set(loaded) == {"train/0", "train/1", "train/2", "train/3", "test/0", "test/1"}
    # the file holds exactly the cached selective-search boxes, in their order
    cfg = build_config(detector="fast", overrides={"proposals.cache_dir": str(cache_dir), "proposals.max_proposals": 300})
    store = ProposalCache(cache_dir, selective_search_params(cfg.proposals))
    ds = build_dataset("synthetic", "test", min_size=96, max_size=128,
                       synthetic=SyntheticConfig(train_images=4, test_images=2, image_size=96))
    entry = store.load(image_digest(ds.load_image(1)))
    assert entry is not None and np.allclose(loaded["test/1"], np.asarray(entry.boxes), atol=1e-4)

    def no_search(*args, **kwargs):
        raise AssertionError("selective search ran")

    monkeypatch.setattr(harness.proposals.precompute, "selective_search", no_search)
    result = runner.invoke(app, ["run", "--detector", "fast", "--results", str(tmp_path), *TINY, "--set",
                                 "test.svd=false", "--set", "proposals.source=file", "--set", f"proposals.file={path}"])
    assert result.exit_code == 0, result.output
    rec = json.loads((tmp_path / "runs.jsonl").read_text().splitlines()[-1])
    assert rec["status"] == "ok" and rec["proposals"]["source"] == "file"
