"""Truncated SVD of fully connected layers, for faster detection (Fast R-CNN, section 3.1).

Detection spends much of its time in the FC layers, once per RoI. A layer
``y = W x + b`` with ``W`` of shape ``[u, v]`` is approximated by its top ``t``
singular values, ``W ~ U_t S_t V_t^T``, and replaced by two layers: the first
(``S_t V_t^T``, ``[t, v]``, no bias) and the second (``U_t``, ``[u, t]``, with
the original bias). Multiply-adds per RoI drop from ``u v`` to ``t (u + v)``.
The paper keeps 1024 singular values of VGG16's fc6 and 256 of fc7 (both 4096
wide): test time -30% for -0.3 mAP.

Shape shorthand: R = RoIs, u = output features, v = input features, t = rank.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from detectors.packed_linear import PackedLinear, pack_linears

# The paper's ranks relative to VGG16's 4096-wide fc6 / fc7 (Fast R-CNN, section 3.1):
# used to scale default ranks to narrower heads (the tiny head's 256 -> 64 and 16).
PAPER_RANK_FRACTIONS = (1024 / 4096, 256 / 4096)


@dataclass
class SVDLayerReport:
    """One compressed layer: its name, shape ``[u, v]``, rank, and multiply-adds per RoI."""

    name: str
    out_features: int
    in_features: int
    rank: int
    macs_before: int
    macs_after: int
    relative_error: float  # ||W - W_t||_F / ||W||_F


def truncated_svd(linear: nn.Linear, rank: int) -> tuple[nn.Sequential, float]:
    """Two-layer low-rank replacement of ``linear`` and its relative Frobenius error.

    Args:
        linear: ``[u, v]`` layer.
        rank: t, ``1 <= t <= min(u, v)``; at ``min(u, v)`` the output is reproduced up to rounding.
    Returns:
        ``Sequential(Linear(v, t, bias=False), Linear(t, u))`` and ``||W - W_t|| / ||W||``.
    """
    weight = linear.weight.detach()
    u, v = weight.shape
    if not 1 <= rank <= min(u, v):
        raise ValueError(f"SVD rank must be in 1..{min(u, v)} for a [{u}, {v}] layer, got {rank}")
    # float64 for the factorisation itself: the split must not add error of its own
    left, sigma, right_t = torch.linalg.svd(weight.double(), full_matrices=False)
    # W [u, v] = left [u, k] @ diag(sigma) [k, k] @ right_t [k, v], k = min(u, v)
    first = nn.Linear(v, rank, bias=False)
    second = nn.Linear(rank, u, bias=linear.bias is not None)
    with torch.no_grad():
        first.weight.copy_((sigma[:rank, None] * right_t[:rank]).to(weight.dtype))  # [t, v]
        second.weight.copy_(left[:, :rank].to(weight.dtype))  # [u, t]
        if linear.bias is not None:
            second.bias.copy_(linear.bias.detach())
    error = float(sigma[rank:].square().sum().sqrt() / sigma.square().sum().sqrt().clamp_min(1e-30))
    low_rank = nn.Sequential(first, second).to(weight.device)
    if isinstance(linear, PackedLinear):
        pack_linears(low_rank)  # the factors take the same inference path as the layer they replace
    return low_rank, error


def fc_layers(module: nn.Module) -> list[tuple[str, nn.Linear]]:
    """The ``nn.Linear`` children of a box head, in order (fc6, fc7, ...)."""
    return [(name, m) for name, m in module.named_modules() if isinstance(m, nn.Linear)]


def default_ranks(module: nn.Module) -> tuple[int, ...]:
    """The paper's ranks scaled to the head's widths: ``u / 4`` for fc6, ``u / 16`` for fc7."""
    layers = fc_layers(module)[: len(PAPER_RANK_FRACTIONS)]
    return tuple(max(1, round(lin.out_features * f)) for (_, lin), f in zip(layers, PAPER_RANK_FRACTIONS))


def compress_fc_layers(module: nn.Module, ranks: tuple[int, ...]) -> list[SVDLayerReport]:
    """Replace the first ``len(ranks)`` FC layers of ``module`` in place by their truncated SVD.

    Args:
        module: a box head (e.g. ``model.roi_head.box_head``); copy the model first to keep the original.
        ranks: t per layer, in the order of :func:`fc_layers`.
    """
    layers = fc_layers(module)
    if len(ranks) > len(layers):
        raise ValueError(f"{len(ranks)} SVD ranks given but the box head has {len(layers)} FC layers")
    reports = []
    for (name, linear), rank in zip(layers, ranks):
        low_rank, error = truncated_svd(linear, rank)
        parent_name, _, child = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        setattr(parent, child, low_rank)
        u, v = linear.weight.shape
        reports.append(SVDLayerReport(name, u, v, rank, u * v, rank * (u + v), error))
    return reports
