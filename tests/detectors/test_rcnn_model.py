"""R-CNN behind the common interface: fine-tuning mini-batches, the test path, the training stages."""
import pytest
import torch
from rcnn_fixtures import jittered_proposals, tiny_dataset, tiny_rcnn
from torchvision.ops import box_iou

from harness.data import training_target
from harness.train.rcnn import train_rcnn


def _target(boxes, labels, height=96, width=128, seed=0):
    boxes = torch.tensor(boxes, dtype=torch.float32)
    return {"boxes": boxes, "labels": torch.tensor(labels),
            "proposals": jittered_proposals(boxes, height, width, per_box=30, random=200, seed=seed)}


def test_finetuning_minibatch_is_32_foreground_and_96_background():
    model, _ = tiny_rcnn(**{"rcnn.max_proposals_train": 400})
    model.train()
    targets = [_target([[10, 10, 50, 60], [60, 20, 120, 80]], [1, 3]), _target([[5, 5, 40, 40]], [2], seed=1)]
    images = [torch.rand(3, 96, 128), torch.rand(3, 96, 128)]
    batch, sizes = model.normalize(images)
    rois, labels = model.finetune_regions(batch, sizes, targets)
    assert rois.shape == (128, 5) and labels.shape == (128,)
    assert int((labels > 0).sum()) == 32 and int((labels == 0).sum()) == 96
    assert set(labels.unique().tolist()) <= {0, 1, 2, 3}
    # undo the context dilation (same centre, sides times (S - 2p) / S) to get the regions back
    s, p = model.crop_size, model.padding
    centre, half = (rois[:, 1:3] + rois[:, 3:5]) / 2, (rois[:, 3:5] - rois[:, 1:3]) / 2 * (s - 2 * p) / s
    regions = torch.cat((centre - half, centre + half), 1)
    for image_index, target in enumerate(targets):  # foreground: IoU >= 0.5 with a gt box of its class
        mine = (rois[:, 0] == image_index) & (labels > 0)
        iou = box_iou(regions[mine], target["boxes"])
        best, which = iou.max(dim=1)
        assert mine.any() and (best >= 0.5 - 1e-4).all()
        assert (target["labels"][which] == labels[mine]).all()
    losses = model(images, targets)
    assert set(losses) == {"loss_cls"} and losses["loss_cls"].isfinite()
    losses["loss_cls"].backward()
    assert model.network.cls_score.weight.grad is not None


def test_background_is_iou_below_half_and_includes_near_zero():
    model, _ = tiny_rcnn()
    gt = torch.tensor([[10.0, 10.0, 50.0, 50.0]])
    regions = torch.tensor([[10.0, 10.0, 50.0, 50.0], [12.0, 12.0, 52.0, 52.0], [30.0, 30.0, 70.0, 70.0],
                            [80.0, 60.0, 120.0, 90.0]])
    from detectors.box_ops import match_to_gt

    labels, _ = match_to_gt(model.finetune_matcher, regions, gt, torch.tensor([2]))
    assert labels.tolist() == [2, 2, 0, 0]  # IoU 1, 0.82 -> fg; 0.14 and 0 -> background (R-CNN: [0, 0.5))
    assert box_iou(regions[2:3], gt).item() < 0.5


def test_eval_needs_trained_svms_and_proposals():
    model, _ = tiny_rcnn()
    model.eval()
    image = torch.rand(3, 96, 128)
    with pytest.raises(RuntimeError, match="SVMs are not trained"):
        model([image], [{"proposals": torch.tensor([[0.0, 0.0, 20.0, 20.0]])}])
    model.set_svms(torch.randn(3, 256), torch.zeros(3), 1.0)
    with pytest.raises(ValueError, match="needs region proposals"):
        model([image])


def test_eval_returns_the_common_format_and_handles_no_proposals():
    model, _ = tiny_rcnn()
    model.eval()
    model.set_svms(torch.randn(3, 256) * 0.1, torch.full((3,), 0.5), 1.0)
    images = [torch.rand(3, 96, 128), torch.rand(3, 80, 100)]
    inputs = [{"proposals": jittered_proposals(torch.tensor([[10.0, 10, 60, 70]]), 96, 128)},
              {"proposals": torch.zeros(0, 4)}]
    stages = []

    def timer(name):
        stages.append(name)
        from contextlib import nullcontext
        return nullcontext()

    with torch.no_grad():
        out = model(images, inputs, timer=timer)
    assert len(out) == 2 and out[1]["boxes"].shape == (0, 4)
    first = out[0]
    assert set(first) == {"boxes", "labels", "scores"} and first["boxes"].shape[0] > 0
    assert ((first["labels"] >= 1) & (first["labels"] <= 3)).all()
    assert (first["boxes"][:, 2] <= 128).all() and (first["boxes"][:, 3] <= 96).all()
    assert set(stages) == {"proposals", "warp", "cnn", "classifier", "nms"}


def test_box_regressors_move_the_boxes_and_softmax_needs_no_svm():
    model, _ = tiny_rcnn(**{"rcnn.classifier": "softmax", "model.score_thresh": 0.0})
    model.eval()
    proposals = torch.tensor([[10.0, 10.0, 50.0, 50.0]])
    with torch.no_grad():
        plain = model([torch.rand(3, 96, 128)], [{"proposals": proposals}])[0]
        weight = torch.zeros(3, model.network.dims["pool5"], 4)
        model.set_box_regressors(weight, torch.tensor([[1.0, 0.0, 0.0, 0.0]] * 3))  # dx = 0.1 w after stds
        moved = model([torch.rand(3, 96, 128)], [{"proposals": proposals}])[0]
    assert torch.allclose(plain["boxes"], proposals.expand_as(plain["boxes"]))
    torch.testing.assert_close(moved["boxes"], (proposals + torch.tensor([4.0, 0, 4.0, 0])).expand_as(moved["boxes"]))


def test_training_stages_install_svms_and_regressors(tmp_path):
    """The four stages on three tiny images with jittered-gt proposals (no selective search)."""
    model, cfg = tiny_rcnn(**{"train.epochs": 1, "train.warmup_iters": 1, "rcnn.hard_negative_rounds": 2})
    dataset = tiny_dataset(images=3)
    result = train_rcnn(model, dataset, cfg, device=torch.device("cpu"), checkpoint_path=tmp_path / "run" / "c.pt",
                        cache_root=tmp_path / "cache")
    assert set(result.stages) == {"finetune", "features", "svm", "bbox_reg"} and result.iterations == 1
    assert bool(model.svm_trained) and bool(model.bbox_trained)
    assert result.disk["bytes"] == sum(result.disk["items"].values()) > 0
    assert result.disk["extrapolated"]["bytes"] == 256 * 4 * 5011 * 2000
    assert result.details["svm"]["positives"] == [sum(int((training_target(dataset.annotation(i))["labels"] == k)
                                                          .sum()) for i in range(3)) for k in (1, 2, 3)]
    assert (tmp_path / "run" / "rcnn_model.pt").is_file()
    image, target = dataset[0]
    model.eval()
    with torch.no_grad():
        (out,) = model([image], [{"proposals": target["proposals"]}])
    assert out["boxes"].shape[0] > 0


def test_without_finetuning_the_features_come_from_the_initial_network(tmp_path):
    """Table 2's "no fine-tuning" rows: no SGD step, the SVMs train on the initial network's pool5."""
    model, cfg = tiny_rcnn(**{"rcnn.finetune": False, "rcnn.feature_layer": "pool5", "rcnn.bbox_reg": False})
    before = {k: v.clone() for k, v in model.network.state_dict().items()}
    result = train_rcnn(model, tiny_dataset(images=2), cfg, device=torch.device("cpu"), cache_root=tmp_path)
    assert result.iterations == 0 and result.stages["finetune"] == 0.0 and result.details["finetuned"] is False
    assert all(torch.equal(before[k], v) for k, v in model.network.state_dict().items())
    assert bool(model.svm_trained) and model.svm_weight.shape == (3, 160 * 7 * 7)
    assert result.disk["items"] == {"feature_cache": result.disk["bytes"], "bbox_reg_cache": 0}
