"""Issue 17 item 3: the mechanisms behind the missing tables and rows (tiny settings)."""
import pytest
import torch

from harness.config import ConfigError, build_config
from harness.run.builder import build_model


def _proposal_targets():
    return [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),
             "proposals": torch.tensor([[10.0, 12.0, 70.0, 90.0], [30.0, 5.0, 120.0, 60.0]])}]


def test_test_box_regression_off_keeps_proposals_as_boxes():
    """Fast R-CNN Table 6: multi-task trained, tested without bbox_pred: every box is a proposal."""
    outs = {}
    for flag in (True, False):
        torch.manual_seed(0)
        model = build_model(build_config(detector="fast", overrides={"test.box_regression": flag,
                                                                    "model.score_thresh": 0.0}), num_classes=2)
        with torch.no_grad():
            model.roi_head.bbox_pred.bias.fill_(0.5)  # a regressor that moves every box
        model.eval()
        with torch.no_grad():
            outs[flag] = model([torch.rand(3, 128, 160)], _proposal_targets())[0]["boxes"]
    proposals = _proposal_targets()[0]["proposals"]
    assert len(outs[False]) and all((proposals == b).all(dim=1).any() for b in outs[False])
    assert not any((proposals == b).all(dim=1).any() for b in outs[True])  # the regressor moved them


def test_test_box_regression_refused_for_rcnn():
    with pytest.raises(ConfigError, match="rcnn.bbox_reg"):
        build_config(detector="rcnn", overrides={"test.box_regression": False})


def _props_file(tmp_path, n_train=4, n_test=2):
    from harness.proposals.external import save_proposal_file

    boxes = {f"{split}/{i}": [[0, 0, 48, 48], [10, 10, 90, 90], [30, 20, 96, 80], [5, 40, 60, 95]]
             for split, n in (("train", n_train), ("test", n_test)) for i in range(n)}
    path = tmp_path / "props.json"
    save_proposal_file(path, boxes)
    return ["--set", "proposals.source=file", "--set", f"proposals.file={path}"]


def test_fast_svm_pass_records_svm_metrics_and_reuses_rcnn_trainer(tmp_path, tiny_run_args, monkeypatch):
    """Fast R-CNN Table 8: the SVM pass trains through R-CNN's svms_from_cache and tests with the SVM scores."""
    import json

    from typer.testing import CliRunner

    import harness.train.fast_svm as fast_svm
    from harness.cli import app

    calls = []
    real = fast_svm.svms_from_cache
    monkeypatch.setattr(fast_svm, "svms_from_cache", lambda *a, **k: calls.append(a) or real(*a, **k))
    args = ["run", "--detector", "fast", "--results", str(tmp_path / "r"), *tiny_run_args, "--set", "test.svd=false",
            "--set", "test.svm=true", "--set", f"rcnn.cache_dir={tmp_path / 'feat'}", *_props_file(tmp_path)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    rec = json.loads((tmp_path / "r" / "runs.jsonl").read_text().splitlines()[-1])
    assert rec["status"] == "ok" and len(calls) == 1
    svm = rec["fast_svm"]
    assert svm["regions"] >= 4 * 4 and sum(svm["positives"]) > 0 and svm["mining"]["rounds"] >= 1
    assert {"map50_voc07", "map50_area"} <= set(rec["metrics_svm"]) and "svm" in rec["timing"]
    from harness.run.schema import record_problems
    assert record_problems(rec) == []


def test_svm_scores_replace_the_softmax():
    """With SVMs installed, labels follow the SVM scores (one class always wins); set_svms(None) restores softmax."""
    torch.manual_seed(0)
    model = build_model(build_config(detector="fast", overrides={"model.nms_thresh": 1.0}), num_classes=3).eval()
    dim = model.roi_head.cls_score.in_features
    bias = torch.tensor([-5.0, 3.0, -5.0])  # class 2 scores 3, the others -5 (below the -1 threshold)
    model.set_svms(torch.zeros(3, dim), bias, 1.0, score_thresh=-1.0)
    with torch.no_grad():
        out = model([torch.rand(3, 128, 160)], _proposal_targets())[0]
    assert out["labels"].tolist() == [2, 2] and torch.allclose(out["scores"], torch.tensor([3.0, 3.0]))
    model.set_svms(None)
    with torch.no_grad():
        out = model([torch.rand(3, 128, 160)], _proposal_targets())[0]
    assert bool((out["scores"] <= 1).all())  # softmax probabilities again


def test_svm_pass_refused_for_other_detectors():
    from harness.evaluation.passes import wanted_passes

    for det in ("faster", "rcnn"):
        with pytest.raises(ConfigError, match="test.svm"):
            wanted_passes(build_config(detector=det, overrides={"test.svm": True}))


def test_svm_negative_iou_zero_keeps_only_non_overlapping_regions():
    """R-CNN appendix B's sweep includes 0: negatives are then the regions that overlap no box of the class."""
    from harness.train.rcnn import _negative_chunks

    class Cache:
        def read(self, i):
            boxes = [[0, 0, 10, 10], [0, 0, 10, 10], [5, 0, 15, 10], [50, 50, 60, 60]]  # gt first
            return torch.ones(4, 2), {"boxes": boxes, "num_gt": 1, "gt_labels": [1]}

    masks = {t: next(_negative_chunks(Cache(), 1, 1, 1.0, t))[1][:, 0].tolist() for t in (0.0, 0.3, 0.5)}
    assert masks[0.0] == [False, False, False, True]
    assert masks[0.3] == [False, False, False, True]  # IoU 1/3 of the shifted box is not below 0.3
    assert masks[0.5] == [False, False, True, True]
    build_config(detector="rcnn", overrides={"rcnn.svm_neg_iou": 0.0})  # accepted


def test_recall_vs_iou_curve_per_count():
    """Recall against IoU 0.5..0.95 at each count: exact on hand-made boxes, non-increasing in the IoU."""
    from harness.train.engine import RECALL_IOUS, proposal_recall_curve

    class Props(torch.nn.Module):  # a proposal source: the gt box shifted by 0, 2 and 6 px, in that order
        def propose(self, images, targets, top_n):
            return [torch.tensor([[6.0, 0, 46, 40], [2.0, 0, 42, 40], [0.0, 0, 40, 40]])[:top_n]]

    class Data:
        def __len__(self):
            return 1

        def __getitem__(self, i):
            z = torch.zeros(1, dtype=torch.bool)
            return torch.zeros(3, 50, 50), {"boxes": torch.tensor([[0.0, 0, 40, 40]]), "labels": torch.tensor([1]),
                                            "difficult": z, "iscrowd": z}

    out = proposal_recall_curve(Props(), Data(), (1, 3), device=torch.device("cpu"), max_images=None,
                                iou_counts=(1, 2, 3))
    riou = out["recall_vs_iou"]
    assert riou["iou"] == list(RECALL_IOUS) and riou["iou"][0] == 0.5 and riou["iou"][-1] == 0.95
    iou = {1: 34 / 46, 2: 38 / 42, 3: 1.0}  # best IoU among the first n proposals
    for j, n in enumerate((1, 2, 3)):
        assert riou["recall"][j] == [float(iou[n] >= t) for t in RECALL_IOUS]
    assert "recall_vs_iou" not in proposal_recall_curve(Props(), Data(), (3,), device=torch.device("cpu"),
                                                        max_images=None)



def _rpn(**switches):
    from detectors.backbones import build_backbone
    from harness.run.builder import build_rpn

    torch.manual_seed(0)
    cfg = build_config(detector="faster", overrides={"model.anchor_sizes": (32.0,), "model.anchor_ratios": (1.0,)})
    rpn = build_rpn(cfg.model, build_backbone("tiny"))
    for k, v in switches.items():
        setattr(rpn, k, v)
    return rpn.eval()


def test_rpn_test_ablations():
    """Faster R-CNN Table 2: no NMS keeps overlapping boxes; no reg gives the anchors; no cls a seeded random order."""
    from torchvision.ops import box_iou

    anchors = torch.tensor([[0.0, 0, 32, 32], [2.0, 0, 34, 32], [40.0, 40, 72, 72], [60.0, 10, 92, 42]])
    logits = torch.tensor([[4.0, 3.0, 2.0, 1.0]])
    deltas = torch.full((1, 4, 4), 0.1)
    size = [(100, 100)]
    full = _rpn().filter_proposals(anchors, logits, deltas, size, "test", top_n=10)[0]
    assert full.shape[0] == 3  # the two overlapping boxes were NMS'd into one
    no_nms = _rpn(test_nms=False).filter_proposals(anchors, logits, deltas, size, "test", top_n=10)[0]
    assert no_nms.shape[0] == 4 and box_iou(no_nms[:1], no_nms[1:2]).item() > 0.7
    no_reg = _rpn(test_regression=False).filter_proposals(anchors, logits, deltas, size, "test", top_n=10)[0]
    assert torch.equal(no_reg, anchors[[0, 2, 3]])  # ranked anchors, NMS'd, unmoved
    orders = [_rpn(test_scores=False, test_regression=False).filter_proposals(
        anchors, logits, deltas, size, "test", top_n=10)[0] for _ in range(2)]
    assert torch.equal(orders[0], orders[1]) and orders[0].shape[0] == 4  # seeded, no NMS
    assert sorted(orders[0][:, 0].tolist()) == sorted(anchors[:, 0].tolist())
    train_mode = _rpn(test_nms=False).filter_proposals(anchors, logits, deltas, size, "train", top_n=10)[0]
    assert train_mode.shape[0] == 3  # the switches are test-time only
    with pytest.raises(ConfigError, match="rpn_test_nms"):
        build_config(detector="fast", overrides={"model.rpn_test_nms": False})


@pytest.mark.slow
def test_rpn_proposals_pass_tests_fast_on_each_variant(tmp_path, tiny_run_args):
    import json

    from typer.testing import CliRunner

    from harness.cli import app
    from harness.evaluation.rpn_swap import VARIANTS

    args = ["run", "--detector", "fast", "--results", str(tmp_path / "r"), *tiny_run_args, "--set", "test.svd=false",
            "--set", "test.rpn_proposals=true", *_props_file(tmp_path)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    rec = json.loads((tmp_path / "r" / "runs.jsonl").read_text().splitlines()[-1])
    variants = rec["rpn_proposals"]["variants"]
    assert list(variants) == [v[0] for v in VARIANTS]
    assert all(v["map50_area"] is not None and 0 < v["mean_proposals"] <= v["num_proposals"] for v in variants.values())
    assert rec["rpn_proposals"]["rpn_train_iters"] > 0
    from harness.run.schema import record_problems
    assert record_problems(rec) == []


def test_roi_to_scale_mapping_closest_to_target_area():
    """Fast R-CNN Table 7: each RoI goes to the scale whose scaled area is closest to side^2."""
    from detectors.two_stage import assign_pyramid_levels, pyramid_factor

    factors = [0.5, 1.0, 2.0]
    rois = torch.tensor([[0.0, 0, 144, 144],  # 144^2: x0.5 -> 72^2 exactly
                         [0.0, 0, 72, 72],  # x1
                         [0.0, 0, 36, 36],  # x2 -> 72^2
                         [0.0, 0, 10, 10],  # tiny: the largest scale
                         [0.0, 0, 1000, 500]])  # huge: the smallest
    assert assign_pyramid_levels(rois, factors, 72.0).tolist() == [0, 1, 2, 2, 0]
    assert pyramid_factor(100, 200, 150, 1000) == 1.5 and pyramid_factor(100, 200, 150, 250) == 1.25


def test_pyramid_with_one_repeated_scale_equals_single_scale():
    torch.manual_seed(0)
    model = build_model(build_config(detector="fast", overrides={"model.score_thresh": 0.0}), num_classes=2).eval()
    image = torch.rand(3, 128, 160)
    with torch.no_grad():
        single = model([image], _proposal_targets())[0]
        model.set_test_pyramid((128, 128), 1000, 72.0)
        pyramid = model([image], _proposal_targets())[0]
    assert torch.allclose(single["boxes"], pyramid["boxes"], atol=1e-4)
    assert torch.allclose(single["scores"], pyramid["scores"], atol=1e-5)


def test_multi_scale_training_draws_a_scale_per_image_reproducibly():
    from harness.data.specs import build_transforms

    image = torch.rand(3, 100, 150)
    target = {"boxes": torch.tensor([[10.0, 10, 50, 50]]), "labels": torch.tensor([1])}

    def sides(seed, epoch=0):
        t = build_transforms(64, 400, 0.0, seed, scales=(64, 96, 128))
        t.set_epoch(epoch) if hasattr(t, "set_epoch") else None
        out = []
        for _ in range(30):
            im, tg = t(image, target)
            out.append(int(im.shape[-2]))
            assert torch.allclose(tg["boxes"], target["boxes"] * im.shape[-2] / 100, atol=0.5)
        return out

    first = sides(0)
    assert set(first) == {64, 96, 128} and first == sides(0) and first != sides(1)
    single = build_transforms(64, 400, 0.0, 0)
    assert single(image, target)[0].shape[-2] == 64


def test_multi_scale_config_checks():
    cfg = build_config(detector="fast", overrides={"data.scales": "154,184,220"})
    assert cfg.data.scales == (154, 184, 220)
    model = build_model(cfg, num_classes=2)
    assert model.test_scales == (154, 184, 220) and model.roi_side == pytest.approx(224 * 192 / 600)
    for det, extra in (("faster", {}), ("rcnn", {}), ("fast", {"test.svm": True})):
        with pytest.raises(ConfigError, match="data.scales"):
            build_config(detector=det, overrides={"data.scales": "154,184", **extra})
    with pytest.raises(ConfigError, match="data.scales"):
        build_config(detector="fast", overrides={"data.scales": "154,4000"})


@pytest.mark.slow
def test_multi_scale_fast_run_end_to_end(tmp_path, tiny_run_args):
    import json

    from typer.testing import CliRunner

    from harness.cli import app

    args = ["run", "--detector", "fast", "--results", str(tmp_path / "r"), *tiny_run_args, "--set", "test.svd=false",
            "--set", "data.scales=64,96,128", *_props_file(tmp_path)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    rec = json.loads((tmp_path / "r" / "runs.jsonl").read_text().splitlines()[-1])
    assert rec["status"] == "ok" and rec["config"]["data"]["scales"] == [64, 96, 128]
    assert rec["metrics"]["map50_area"] is not None
