"""Ridge box regression (R-CNN appendix C): solvers agree and a known shift is recovered."""
import torch

from detectors.box_ops import BoxCoder
from detectors.rcnn.bbox_reg import regression_examples, ridge_fit, ridge_fit_chunks


def test_primal_dual_and_streamed_solves_agree():
    g = torch.Generator().manual_seed(0)
    true_w = torch.randn(30, 4, generator=g)
    for n in (20, 200):  # fewer examples than dimensions (dual) and more (primal)
        x = torch.randn(n, 30, generator=g)
        y = x @ true_w + torch.tensor([0.5, -1.0, 0.2, 0.0])
        w, b = ridge_fit(x, y, lam=3.0)
        xc = (x - x.mean(0)).double()
        ref = torch.linalg.solve(xc.T @ xc + 3.0 * torch.eye(30, dtype=torch.float64), xc.T @ (y - y.mean(0)).double())
        torch.testing.assert_close(w, ref.float(), atol=1e-4, rtol=1e-4)
        ws, bs = ridge_fit_chunks([(x[: n // 2], y[: n // 2]), (x[n // 2 :], y[n // 2 :])], 30, 4, lam=3.0)
        torch.testing.assert_close(ws, w, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(bs, b, atol=1e-4, rtol=1e-4)
    w, b = ridge_fit(x, y, lam=1e-6)
    torch.testing.assert_close(w, true_w, atol=1e-3, rtol=0)


def test_box_regression_recovers_a_known_shift():
    """Proposals off by a fixed shift (10 % right, 5 % down, 20 % too wide): the regressor undoes it.

    The features carry no information here, so lambda = 1000 drives W to ~0 and the
    unpenalised bias must hold the shift on its own.
    """
    g = torch.Generator().manual_seed(0)
    gt = torch.tensor([[20.0, 30.0, 80.0, 70.0], [100.0, 40.0, 140.0, 120.0]]).repeat(40, 1)
    w, h = gt[:, 2] - gt[:, 0], gt[:, 3] - gt[:, 1]
    cx, cy = (gt[:, 0] + gt[:, 2]) / 2 + 0.1 * w, (gt[:, 1] + gt[:, 3]) / 2 + 0.05 * h
    proposals = torch.stack((cx - 0.6 * w, cy - 0.5 * h, cx + 0.6 * w, cy + 0.5 * h), 1)
    labels = torch.ones(gt.shape[0], dtype=torch.int64)
    idx, cls, matched = regression_examples(proposals, gt[:2], labels[:2], min_iou=0.6)
    assert idx.numel() == gt.shape[0] and (cls == 1).all()
    coder = BoxCoder()
    targets = coder.encode(proposals[idx], matched)
    features = torch.randn(idx.numel(), 64, generator=g) * 3
    weight, bias = ridge_fit(features, targets, lam=1000.0)
    deltas = features @ weight + bias
    torch.testing.assert_close(coder.decode(proposals[idx], deltas), gt[idx], atol=0.5, rtol=0)


def test_box_regression_learns_a_feature_dependent_shift():
    g = torch.Generator().manual_seed(1)
    n = 300
    shift = torch.rand(n, generator=g) * 0.4 - 0.2  # per proposal, dx in widths
    features = torch.cat((shift[:, None], torch.randn(n, 5, generator=g)), 1)
    proposals = torch.tensor([[10.0, 10.0, 50.0, 50.0]]).repeat(n, 1)
    gt = proposals + torch.stack((shift * 40, torch.zeros(n), shift * 40, torch.zeros(n)), 1)
    coder = BoxCoder()
    weight, bias = ridge_fit(features, coder.encode(proposals, gt), lam=1e-3)
    torch.testing.assert_close(coder.decode(proposals, features @ weight + bias), gt, atol=0.05, rtol=0)


def test_regression_examples_need_iou_above_threshold():
    gt = torch.tensor([[0.0, 0.0, 10.0, 10.0]])
    proposals = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 14.0], [5.0, 5.0, 15.0, 15.0]])
    idx, cls, matched = regression_examples(proposals, gt, torch.tensor([2]), min_iou=0.6)
    assert idx.tolist() == [0, 1] and cls.tolist() == [2, 2] and (matched == gt).all()
    idx, _, _ = regression_examples(proposals, torch.zeros(0, 4), torch.zeros(0, dtype=torch.int64), min_iou=0.6)
    assert idx.numel() == 0
