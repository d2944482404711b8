"""model.channels_last: the same detector, computed in NHWC: same values, and the layout really changes."""
import pytest
import torch

from harness.config import build_config
from harness.run.builder import build_model


def _pair(detector):
    models = []
    for flag in (True, False):
        torch.manual_seed(0)
        models.append(build_model(build_config(detector=detector, overrides={"model.channels_last": flag}), 3).eval())
    return models


@pytest.mark.parametrize("detector", ["faster", "rcnn"])
def test_channels_last_changes_layout_not_values(detector):
    nhwc, nchw = _pair(detector)
    convs = [(a, b) for a, b in zip(nhwc.parameters(), nchw.parameters()) if a.dim() == 4]
    assert convs and all(torch.equal(a, b) for a, b in convs)  # same weights...
    assert all(a.is_contiguous(memory_format=torch.channels_last) for a, _ in convs)
    assert any(not a.is_contiguous() for a, _ in convs)  # (1x1 kernels are both at once)
    assert all(b.is_contiguous() for _, b in convs)  # ...stored differently
    body = (lambda m: m.body) if detector == "faster" else (lambda m: m.network.body)
    x = torch.rand(2, 3, 96, 128)
    with torch.no_grad():
        fa, fb = body(nhwc)(x), body(nchw)(x)
    assert fa.is_contiguous(memory_format=torch.channels_last) and fb.is_contiguous()
    torch.testing.assert_close(fa, fb, atol=1e-4, rtol=1e-4)


def test_channels_last_detector_trains_and_detects():
    nhwc, nchw = _pair("faster")
    image = torch.rand(3, 96, 128)
    target = {"boxes": torch.tensor([[10.0, 12.0, 60.0, 70.0]]), "labels": torch.tensor([1])}
    for model in (nhwc, nchw):
        model.train()
        torch.manual_seed(1)
        losses = model([image], [target])
        sum(losses.values()).backward()
        model.losses = {k: float(v.detach()) for k, v in losses.items()}
    for key, value in nhwc.losses.items():
        assert value == pytest.approx(nchw.losses[key], rel=1e-3, abs=1e-4), key
    grads = [p.grad for p in nhwc.parameters() if p.dim() == 4 and p.grad is not None]
    assert grads and all(g.is_contiguous(memory_format=torch.channels_last) for g in grads)
