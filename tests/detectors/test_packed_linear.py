"""PackedLinear: oneDNN inference on a packed weight, equal to nn.Linear, and only where nothing can tell."""

import copy
import io
import pickle

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from detectors.packed_linear import PackedLinear, pack_linears, packed_path_available
from detectors.svd import compress_fc_layers
from harness.config import apply_overrides, build_config
from harness.run.builder import build_model

pytestmark = pytest.mark.skipif(not packed_path_available(), reason="this PyTorch build has no oneDNN")


def _packed_calls(monkeypatch) -> list:
    """Count calls of the oneDNN op (the packed path) made through the module."""
    calls = []
    real = torch.ops.mkldnn._linear_pointwise

    class Spy:
        def __call__(self, *args):
            calls.append(args[0].shape)
            return real(*args)

    monkeypatch.setattr(torch.ops.mkldnn, "_linear_pointwise", Spy())
    return calls


def _layer(in_f: int = 300, out_f: int = 70, bias: bool = True) -> tuple[nn.Linear, PackedLinear]:
    torch.manual_seed(0)
    plain = nn.Linear(in_f, out_f, bias=bias)
    return plain, PackedLinear.from_linear(copy.deepcopy(plain))


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("rows", [0, 1, 37, 300])
def test_inference_equals_nn_linear_through_onednn(monkeypatch, bias, rows):
    plain, packed = _layer(bias=bias)
    calls = _packed_calls(monkeypatch)
    x = torch.randn(rows, 300)
    with torch.no_grad():
        got, want = packed(x), plain(x)
    assert calls == [x.shape]
    assert got.shape == want.shape and got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    # a non-contiguous input (a column slice) gives the same too
    wide = torch.randn(8, 600)
    with torch.no_grad():
        torch.testing.assert_close(packed(wide[:, ::2]), plain(wide[:, ::2]), rtol=1e-5, atol=1e-5)


def test_training_autocast_and_dispatch_modes_take_the_plain_path(monkeypatch):
    plain, packed = _layer()
    calls = _packed_calls(monkeypatch)
    x = torch.randn(5, 300)
    out = packed(x)  # grad enabled: F.linear, with a graph
    out.sum().backward()
    assert packed.weight.grad is not None and calls == []
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert packed(x).dtype == torch.bfloat16 and calls == []
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        packed(x)
    assert counter.get_total_flops() == 2 * 5 * 300 * 70 and calls == []
    with torch.no_grad():
        packed.double()(x.double())
    assert calls == []


def test_weight_updates_repack_and_train_mode_drops_the_copy():
    plain, packed = _layer()
    x = torch.randn(4, 300)
    with torch.no_grad():
        packed(x)
        first = packed.packed_weight()
        assert packed.packed_weight() is first  # cached while the weight is unchanged
        for layer in (plain, packed):
            layer.weight.mul_(2.0)  # an in-place update, as an optimizer step makes
        torch.testing.assert_close(packed(x), plain(x), rtol=1e-5, atol=1e-5)
        assert packed.packed_weight() is not first
        state = {k: v * -1 for k, v in plain.state_dict().items()}
        plain.load_state_dict(state)
        packed.load_state_dict(state)
        torch.testing.assert_close(packed(x), plain(x), rtol=1e-5, atol=1e-5)
    packed.train()
    assert packed._packed is None


def test_copies_pickles_and_state_dict_match_nn_linear():
    plain, packed = _layer()
    with torch.no_grad():
        packed(torch.randn(2, 300))  # holds an opaque oneDNN copy now
    assert packed._packed is not None
    clone = copy.deepcopy(packed)
    assert clone._packed is None and packed._packed is not None
    again = pickle.loads(pickle.dumps(packed))
    assert isinstance(again, PackedLinear)
    assert packed.state_dict().keys() == plain.state_dict().keys()
    buf = io.BytesIO()
    torch.save(packed.state_dict(), buf)
    buf.seek(0)
    plain.load_state_dict(torch.load(buf, weights_only=True))


def test_pack_linears_shares_parameters_and_svd_factors_stay_packed(monkeypatch):
    torch.manual_seed(0)
    head = nn.Sequential(nn.Flatten(), nn.Linear(48, 32), nn.ReLU(), nn.Sequential(nn.Linear(32, 16)))
    params = [id(p) for p in head.parameters()]
    x = torch.randn(6, 3, 4, 4)
    with torch.no_grad():
        want = head(x)
    pack_linears(head)
    assert [type(m) for m in head.modules() if isinstance(m, nn.Linear)] == [PackedLinear, PackedLinear]
    assert [id(p) for p in head.parameters()] == params
    calls = _packed_calls(monkeypatch)
    with torch.no_grad():
        torch.testing.assert_close(head(x), want, rtol=1e-5, atol=1e-5)
    assert len(calls) == 2
    compress_fc_layers(head, (8,))
    assert [type(m) for m in head[1]] == [PackedLinear, PackedLinear]


@pytest.mark.parametrize("detector", ["faster", "rcnn"])
def test_built_detectors_pack_their_fc_layers_only_when_configured(detector):
    cfg = build_config(detector=detector, profile="cpu")
    model = build_model(cfg, num_classes=3)
    assert any(isinstance(m, PackedLinear) for m in model.modules())
    off = build_model(apply_overrides(cfg, {"model.packed_linear": False}), num_classes=3)
    assert not any(isinstance(m, PackedLinear) for m in off.modules())
    assert model.state_dict().keys() == off.state_dict().keys()
