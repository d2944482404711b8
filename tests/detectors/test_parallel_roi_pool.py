"""RoI pooling spread over threads gives exactly the single-call result, forward and backward."""
import pytest
import torch
from torchvision.ops import roi_align, roi_pool

from detectors.roi_heads import PARALLEL_MIN_ROIS, pool_rois


@pytest.mark.parametrize("kind, op, args", [("roi_pool", roi_pool, ((7, 7), 1 / 16)),
                                            ("roi_align", roi_align, ((7, 7), 1 / 16, 2, True))])
def test_threaded_pooling_matches_one_call(kind, op, args):
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
        assert type(threaded.grad_fn).__name__ == "_ThreadedRoIPoolingBackward"  # backward threaded too
        (grad_threaded,) = torch.autograd.grad((threaded * weights).sum(), features)
        with torch.no_grad():  # the workers take this thread's grad mode
            assert not pool_rois(kind, features, rois, *args).requires_grad
    finally:
        torch.set_num_threads(threads)
    single = op(features, rois, *args)
    (grad_single,) = torch.autograd.grad((single * weights).sum(), features)
    assert torch.equal(threaded, single)
    torch.testing.assert_close(grad_threaded, grad_single, atol=1e-4, rtol=1e-4)  # summation order differs
