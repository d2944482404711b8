import torch

from detectors.box_ops import BoxCoder, Matcher, match_to_gt, sample_balanced


def test_box_coder_round_trip():
    g = torch.Generator().manual_seed(0)
    ref = torch.rand(50, 2, generator=g) * 100
    ref = torch.cat((ref, ref + 5 + torch.rand(50, 2, generator=g) * 80), 1)
    gt = torch.rand(50, 2, generator=g) * 100
    gt = torch.cat((gt, gt + 5 + torch.rand(50, 2, generator=g) * 80), 1)
    for stds in [(0.1, 0.1, 0.2, 0.2), (1.0, 1.0, 1.0, 1.0)]:
        coder = BoxCoder(stds)
        deltas = coder.encode(ref, gt)
        assert torch.allclose(coder.decode(ref, deltas), gt, atol=1e-3)


def test_box_coder_targets_match_paper_formula():
    coder = BoxCoder((0.1, 0.1, 0.2, 0.2))
    ref = torch.tensor([[0.0, 0.0, 10.0, 20.0]])  # centre (5, 10), w 10, h 20
    gt = torch.tensor([[2.0, 4.0, 22.0, 24.0]])  # centre (12, 14), w 20, h 20
    d = coder.encode(ref, gt)[0]
    expected = torch.tensor([(12 - 5) / 10 / 0.1, (14 - 10) / 20 / 0.1, torch.log(torch.tensor(2.0)) / 0.2, 0.0])
    assert torch.allclose(d, expected, atol=1e-5)


def test_decode_many_classes_shape():
    coder = BoxCoder()
    ref = torch.tensor([[0.0, 0.0, 10.0, 10.0]] * 3)
    out = coder.decode(ref, torch.zeros(3, 4 * 5))
    assert out.shape == (3, 20)
    assert torch.allclose(out.reshape(3, 5, 4), ref[:, None].expand(3, 5, 4))


def test_matcher_thresholds_and_low_quality():
    # 1 gt, 4 proposals with IoUs 0.8, 0.5, 0.2, 0.05
    iou = torch.tensor([[0.8, 0.5, 0.2, 0.05]])
    m = Matcher(0.7, 0.3)(iou)
    assert m.tolist() == [0, Matcher.BETWEEN, Matcher.BELOW_LOW, Matcher.BELOW_LOW]
    m = Matcher(0.5, 0.5, low_min=0.1)(iou)  # Fast R-CNN RoI labelling: bg in [0.1, 0.5)
    assert m.tolist() == [0, 0, Matcher.BELOW_LOW, Matcher.BETWEEN]
    # the best proposal for a gt is positive even below the threshold (RPN rule)
    iou = torch.tensor([[0.4, 0.2], [0.1, 0.6]])
    m = Matcher(0.7, 0.3, allow_low_quality=True)(iou)
    assert m.tolist() == [0, 1]


def test_matcher_no_gt_is_all_background():
    assert Matcher(0.7, 0.3)(torch.zeros(0, 5)).tolist() == [Matcher.BELOW_LOW] * 5
    assert Matcher(0.5, 0.5, low_min=0.1)(torch.zeros(0, 3)).tolist() == [Matcher.BETWEEN] * 3


def test_match_to_gt_labels_and_boxes():
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    props = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 4.0], [50.0, 50.0, 60.0, 60.0]])
    labels, boxes = match_to_gt(Matcher(0.5, 0.5), props, gt, torch.tensor([3]))
    assert labels.tolist() == [3, 0, 0]
    assert boxes[0].tolist() == gt[0].tolist() and boxes[2].abs().sum() == 0


def test_sampler_counts():
    labels = torch.tensor([1] * 100 + [0] * 1000 + [-1] * 50)
    g = torch.Generator().manual_seed(0)
    pos, neg = sample_balanced(labels, batch_size=128, positive_fraction=0.25, generator=g)
    assert pos.numel() == 32 and neg.numel() == 96
    assert (labels[pos] > 0).all() and (labels[neg] == 0).all()
    assert pos.unique().numel() == 32 and neg.unique().numel() == 96
    # few positives: negatives fill the batch
    labels = torch.tensor([1] * 5 + [0] * 1000)
    pos, neg = sample_balanced(labels, batch_size=256, positive_fraction=0.5, generator=g)
    assert pos.numel() == 5 and neg.numel() == 251
    # empty
    pos, neg = sample_balanced(torch.full((10,), -1), batch_size=8, positive_fraction=0.5)
    assert pos.numel() == 0 and neg.numel() == 0
