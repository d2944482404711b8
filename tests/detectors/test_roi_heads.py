import torch
from torch import nn

from detectors.box_ops import BoxCoder
from detectors.roi_heads import (
    RoIHead,
    RoISampler,
    fast_rcnn_losses,
    postprocess_detections,
)


def _head(num_classes=3, pooler="roi_pool"):
    box_head = nn.Sequential(nn.Flatten(), nn.Linear(4 * 7 * 7, 16), nn.ReLU())
    return RoIHead(box_head=box_head, representation_size=16, num_classes=num_classes, pooler=pooler)


def test_head_shapes_for_both_poolers():
    feats = torch.randn(2, 4, 8, 8)
    rois = [torch.tensor([[0.0, 0.0, 64.0, 64.0], [10.0, 10.0, 40.0, 50.0]]), torch.tensor([[5.0, 5.0, 100.0, 90.0]])]
    for pooler in ("roi_pool", "roi_align"):
        logits, deltas = _head(pooler=pooler)(feats, rois)
        assert logits.shape == (3, 4) and deltas.shape == (3, 16)


def test_sampler_adds_gt_and_respects_fraction():
    sampler = RoISampler(batch_size_per_image=16, positive_fraction=0.25, box_coder=BoxCoder())
    gt = torch.tensor([[10.0, 10.0, 50.0, 50.0]])
    # many background proposals with IoU in [0.1, 0.5), none foreground
    props = torch.tensor([[10.0 + i, 10.0, 95.0 + i, 50.0] for i in range(40)])
    rois, labels, targets = sampler([props], [{"boxes": gt, "labels": torch.tensor([2])}])
    assert (labels == 2).sum() == 1  # only the added gt box is foreground
    assert labels.numel() == 16 and rois[0].shape == (16, 4)
    fg = labels > 0
    assert torch.allclose(targets[fg], torch.zeros(1, 4), atol=1e-6)  # gt vs itself: zero deltas


def test_sampler_image_without_gt():
    sampler = RoISampler(batch_size_per_image=8, box_coder=BoxCoder(), bg_iou_low=0.0)
    props = torch.tensor([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 30.0, 30.0]])
    target = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)}
    rois, labels, _ = sampler([props], [target])
    assert labels.tolist() == [0, 0]


def test_losses_only_regress_foreground_of_true_class():
    logits = torch.zeros(2, 3, requires_grad=True)
    deltas = torch.zeros(2, 12, requires_grad=True)
    labels = torch.tensor([2, 0])
    targets = torch.tensor([[1.0, 0.0, 0.0, 0.0], [5.0, 5.0, 5.0, 5.0]])
    losses = fast_rcnn_losses(logits, deltas, labels, targets, box_weight=2.0)
    # smooth L1(beta 1) of 1 is 0.5; averaged over 2 RoIs, times lambda 2
    assert abs(losses["loss_box"].item() - 0.5) < 1e-6
    assert abs(losses["loss_cls"].item() - float(torch.log(torch.tensor(3.0)))) < 1e-6
    losses["loss_box"].backward()
    grad = deltas.grad.reshape(2, 3, 4)
    assert grad[0, 2].abs().sum() > 0 and grad[0, :2].abs().sum() == 0 and grad[1].abs().sum() == 0


def test_postprocess_nms_threshold_and_top_k():
    rois = [torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 11.0], [50.0, 50.0, 60.0, 60.0]])]
    logits = torch.tensor([[0.0, 5.0, 0.0], [0.0, 4.0, 0.0], [9.0, 0.0, 0.0]])  # third is background
    deltas = torch.zeros(3, 12)
    out = postprocess_detections(logits, deltas, rois, [(100, 100)], box_coder=BoxCoder(), score_thresh=0.05)
    # the two overlapping class-1 boxes collapse to one by NMS 0.3; background-scored box drops out
    assert out[0]["labels"].tolist() == [1]
    assert out[0]["boxes"][0].tolist() == [0.0, 0.0, 10.0, 10.0]
    out = postprocess_detections(logits, deltas, rois, [(100, 100)], box_coder=BoxCoder(), max_detections=0)
    assert out[0]["boxes"].shape == (0, 4)
