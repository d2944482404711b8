"""Our CPU RoI pooling gives torchvision's result, forward and backward: RoI max pooling spread over
threads exactly, RoI Align as a sparse matrix product up to float rounding."""
import pytest
import torch
from torchvision.ops import roi_align, roi_pool

from detectors.roi_heads import PARALLEL_MIN_ROIS, pool_rois


def test_threaded_roi_pool_matches_one_call():
    kind, op, args = "roi_pool", roi_pool, ((7, 7), 1 / 16)
    g = torch.Generator().manual_seed(0)
    features = torch.randn(2, 8, 12, 14, generator=g, requires_grad=True)
    n = PARALLEL_MIN_ROIS * 3 + 5
    xy = torch.rand(n, 2, generator=g) * 100
    rois = torch.cat((torch.randint(0, 2, (n, 1), generator=g).float(), xy, xy + 16 + torch.rand(n, 2, generator=g) * 80), 1)
    weights = torch.randn(n, 8, 7, 7, generator=g)
    threads = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        threaded = pool_rois(kind, features, rois, *args)
        assert type(threaded.grad_fn).__name__ == "_ThreadedRoIPoolBackward"  # backward threaded too
        (grad_threaded,) = torch.autograd.grad((threaded * weights).sum(), features)
        with torch.no_grad():  # the workers take this thread's grad mode
            assert not pool_rois(kind, features, rois, *args).requires_grad
    finally:
        torch.set_num_threads(threads)
    single = op(features, rois, *args)
    (grad_single,) = torch.autograd.grad((single * weights).sum(), features)
    assert torch.equal(threaded, single)
    torch.testing.assert_close(grad_threaded, grad_single, atol=1e-4, rtol=1e-4)  # summation order differs


def _rois(g, n, images, extent):
    """Boxes of every kind: inside, crossing and beyond the border, degenerate, tiny."""
    xy = torch.rand(n, 2, generator=g) * extent * 1.2 - extent * 0.2
    wh = torch.rand(n, 2, generator=g) * extent * 0.6
    wh[: n // 10] = 0  # points
    boxes = torch.cat((xy, xy + wh), 1)
    boxes[-3:] = torch.tensor([[-80.0, -80.0, 400.0, 400.0], [0.0, 0.0, 1.0, 1.0], [500.0, 500.0, 520.0, 530.0]])
    return torch.cat((torch.randint(0, images, (n, 1), generator=g).float(), boxes), 1)


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("channels_last", [False, True])
def test_sparse_roi_align_matches_torchvision(aligned, channels_last):
    g = torch.Generator().manual_seed(1)
    features = torch.randn(3, 16, 11, 13, generator=g)
    if channels_last:
        features = features.contiguous(memory_format=torch.channels_last)
    features.requires_grad_(True)
    rois = _rois(g, 150, 3, 200.0)
    weights = torch.randn(150, 16, 5, 6, generator=g)
    for ratio in (1, 2, 3):
        ours = pool_rois("roi_align", features, rois, (5, 6), 1 / 16, ratio, aligned)
        assert type(ours.grad_fn).__name__ == "_SparseRoIAlignBackward"
        theirs = roi_align(features, rois, (5, 6), 1 / 16, ratio, aligned)
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)
        (grad_ours,) = torch.autograd.grad((ours * weights).sum(), features)
        (grad_theirs,) = torch.autograd.grad((theirs * weights).sum(), features)
        torch.testing.assert_close(grad_ours, grad_theirs, atol=1e-4, rtol=1e-4)


def test_sparse_roi_align_gradcheck_and_edge_cases():
    g = torch.Generator().manual_seed(2)
    features = torch.randn(2, 3, 5, 6, generator=g, dtype=torch.float64, requires_grad=True)
    rois = _rois(g, 12, 2, 80.0).double()
    assert torch.autograd.gradcheck(lambda f: pool_rois("roi_align", f, rois, (3, 3), 1 / 8), (features,))
    empty = pool_rois("roi_align", features, rois[:0], (3, 3), 1 / 8)
    assert empty.shape == (0, 3, 3, 3)
    with torch.no_grad():
        assert not pool_rois("roi_align", features, rois, (3, 3), 1 / 8).requires_grad


def test_sparse_roi_align_does_not_depend_on_thread_count():
    g = torch.Generator().manual_seed(3)
    features = torch.randn(2, 32, 14, 12, generator=g, requires_grad=True)
    rois = _rois(g, 300, 2, 200.0)
    weights = torch.randn(300, 32, 7, 7, generator=g)
    results = []
    threads = torch.get_num_threads()
    try:
        for n in (1, 3):
            torch.set_num_threads(n)
            out = pool_rois("roi_align", features, rois, (7, 7), 1 / 16)
            results.append((out, *torch.autograd.grad((out * weights).sum(), features)))
    finally:
        torch.set_num_threads(threads)
    assert torch.equal(results[0][0], results[1][0]) and torch.equal(results[0][1], results[1][1])
