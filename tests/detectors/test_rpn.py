import torch

from detectors.anchors import AnchorGenerator
from detectors.proposals import ImageBatch
from detectors.rpn import RegionProposalNetwork, RPNHead
from harness.evaluation.detection import proposal_recall


def test_cell_anchors_areas_and_ratios():
    gen = AnchorGenerator(sizes=(128.0, 256.0, 512.0), ratios=(0.5, 1.0, 2.0))
    cell = gen.cell_anchors()
    assert cell.shape == (9, 4)
    w, h = cell[:, 2] - cell[:, 0], cell[:, 3] - cell[:, 1]
    assert torch.allclose(w * h, torch.tensor([128.0**2] * 3 + [256.0**2] * 3 + [512.0**2] * 3), rtol=1e-5)
    assert torch.allclose(h / w, torch.tensor([0.5, 1.0, 2.0] * 3), rtol=1e-5)


def test_grid_anchors_centres_and_order():
    gen = AnchorGenerator(sizes=(32.0,), ratios=(1.0,), stride=16)
    a = gen((2, 3), torch.device("cpu"))
    assert a.shape == (6, 4)
    centres = (a[:, :2] + a[:, 2:]) / 2
    # position-major, row by row, centres at (x + 0.5) * stride
    assert centres.tolist() == [[8, 8], [24, 8], [40, 8], [8, 24], [24, 24], [40, 24]]


def _rpn(**kw):
    gen = AnchorGenerator(sizes=(32.0, 64.0), ratios=(1.0,), stride=16)
    return RegionProposalNetwork(anchor_generator=gen, head=RPNHead(8, gen.num_anchors), **kw)


def test_anchor_labelling_hand_case():
    rpn = _rpn(ignore_cross_boundary=True)
    anchors = torch.tensor(
        [
            [0.0, 0.0, 32.0, 32.0],  # IoU 1 with the box: positive
            [4.0, 4.0, 36.0, 36.0],  # IoU ~0.62: ignored (between 0.3 and 0.7)
            [60.0, 60.0, 92.0, 92.0],  # IoU 0: negative
            [-10.0, 0.0, 22.0, 32.0],  # crosses the border: ignored
        ]
    )
    target = {"boxes": torch.tensor([[0.0, 0.0, 32.0, 32.0]]), "labels": torch.tensor([2])}
    labels, matched = rpn.label_anchors(anchors, target, (100, 100))
    assert labels.tolist() == [1, -1, 0, -1]
    assert matched[0].tolist() == [0.0, 0.0, 32.0, 32.0]


def test_best_anchor_is_positive_below_threshold():
    rpn = _rpn()
    anchors = torch.tensor([[0.0, 0.0, 32.0, 32.0], [50.0, 50.0, 82.0, 82.0]])
    target = {"boxes": torch.tensor([[0.0, 0.0, 32.0, 64.0]]), "labels": torch.tensor([1])}  # IoU 0.5
    labels, _ = rpn.label_anchors(anchors, target, (100, 100))
    assert labels.tolist() == [1, 0]


def test_rpn_losses_and_proposals_train_and_eval_with_empty_targets():
    torch.manual_seed(0)
    rpn = _rpn(post_nms_top_n={"train": 50, "test": 20}, pre_nms_top_n={"train": 100, "test": 100})
    feats = torch.randn(2, 8, 6, 6)
    batch = ImageBatch(torch.zeros(2, 3, 96, 96), [(96, 96), (80, 90)])
    targets = [
        {"boxes": torch.tensor([[10.0, 10.0, 50.0, 60.0]]), "labels": torch.tensor([1])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},
    ]
    rpn.train()
    props, losses = rpn(batch, feats, targets)
    assert set(losses) == {"loss_rpn_cls", "loss_rpn_box"}
    assert all(torch.isfinite(v) for v in losses.values())
    sum(losses.values()).backward()
    assert len(props) == 2 and all(p.shape[0] <= 50 for p in props)
    assert not props[0].requires_grad  # proposals are constants (approximate joint training)
    assert (props[1][:, 2] <= 90).all() and (props[1][:, 3] <= 80).all()  # clipped to each image
    rpn.eval()
    props, losses = rpn(batch, feats, None)
    assert losses == {} and all(p.shape[0] <= 20 for p in props)


def test_proposal_recall_counts():
    gt = [torch.tensor([[0.0, 0.0, 10.0, 10.0], [20.0, 20.0, 30.0, 30.0]])]
    props = [torch.tensor([[0.0, 0.0, 10.0, 10.0], [50.0, 50.0, 60.0, 60.0], [20.0, 20.0, 30.0, 31.0]])]
    assert proposal_recall(props, gt, [1, 2, 3], 0.5) == [0.5, 0.5, 1.0]
