"""Truncated SVD of FC layers (Fast R-CNN 3.1): exact at full rank, smaller and cheaper at low rank."""
import pytest
import torch
from torch import nn

from detectors.backbones import build_backbone
from detectors.svd import compress_fc_layers, default_ranks, fc_layers, truncated_svd


def test_full_rank_reproduces_the_layer():
    torch.manual_seed(0)
    layer = nn.Linear(48, 32)
    low_rank, error = truncated_svd(layer, 32)
    x = torch.randn(10, 48)
    assert error < 1e-6
    assert torch.allclose(low_rank(x), layer(x), atol=1e-5)


def test_low_rank_has_the_promised_shapes_error_and_cost():
    torch.manual_seed(0)
    layer = nn.Linear(64, 40)
    low_rank, error = truncated_svd(layer, 8)
    first, second = low_rank
    assert first.weight.shape == (8, 64) and first.bias is None
    assert second.weight.shape == (40, 8) and torch.equal(second.bias, layer.bias)
    sigma = torch.linalg.svdvals(layer.weight.detach().double())
    expected = float(sigma[8:].square().sum().sqrt() / sigma.square().sum().sqrt())
    assert error == pytest.approx(expected, rel=1e-5)
    w_t = second.weight @ first.weight
    assert float(torch.linalg.matrix_rank(w_t)) == 8
    assert 0 < error < 1
    with pytest.raises(ValueError, match="rank"):
        truncated_svd(layer, 41)


def test_compress_tiny_head_with_default_ranks():
    torch.manual_seed(0)
    head = build_backbone("tiny").box_head
    assert default_ranks(head) == (64, 16)  # the paper's 1/4 and 1/16 of the width (256)
    pooled = torch.randn(5, 160, 7, 7)
    reference = head(pooled)
    reports = compress_fc_layers(head, default_ranks(head))
    assert [r.rank for r in reports] == [64, 16]
    assert all(r.macs_after < r.macs_before for r in reports)
    assert head(pooled).shape == reference.shape
    assert len(fc_layers(head)) == 4  # each FC layer is now two


def test_default_ranks_match_the_paper_for_4096_wide_layers():
    head = nn.Sequential(nn.Linear(4, 4096), nn.ReLU(), nn.Linear(4096, 4096))
    assert default_ranks(head) == (1024, 256)
