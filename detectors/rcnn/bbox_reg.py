"""Class-specific bounding-box regression on pool5 features (R-CNN section 3.4, appendix C).

For each class, a linear map from the pool5 feature of a proposal P to the
deltas ``t = ((gx-px)/pw, (gy-py)/ph, log(gw/pw), log(gh/ph))`` (the shared
:class:`~detectors.box_ops.BoxCoder`) towards its ground-truth box G, fitted by
ridge regression with lambda = 1000. Only pairs with IoU(P, G) > 0.6 are used
(appendix C: "if P is far from all ground-truth boxes, the task of transforming
P to G does not make sense"). As in the R-CNN code (``rcnn_train_bbox_regressor``)
features are first scaled to mean L2 norm 20, the scale lambda = 1000 is set for.

The ridge bias is not penalised (features and targets are centred), and the
solve takes the cheaper side: the primal ``(X'X + lambda I) W = X'Y`` when there
are more examples than dimensions, the dual ``W = X' (XX' + lambda I)^-1 Y``
otherwise (a few thousand examples against 7840 pool5 dimensions for ``tiny``,
25088 for VGG16). Ridge predictions are linear in the targets, so the box
coder's stds change nothing after decoding.

Shape shorthand: N = examples, D = feature size, T = target size (4).
"""
from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor
from torchvision.ops import box_iou


def ridge_fit(x: Tensor, y: Tensor, lam: float) -> tuple[Tensor, Tensor]:
    """Ridge regression with an unpenalised bias.

    Args:
        x: ``[N, D]``; y: ``[N, T]``; lam: the L2 penalty lambda.
    Returns:
        ``W [D, T]`` and ``b [T]`` minimising ``|x W + b - y|^2 + lam |W|^2``.
    """
    n, d = x.shape
    if n == 0:
        return torch.zeros(d, y.shape[1]), torch.zeros(y.shape[1])
    # the big products run in float32 (a 3000 x 3000 x 7840 Gram in float64 is seconds of CPU);
    # means and the solve in float64
    x = x.float()
    mx, my = x.mean(0, dtype=torch.float64), y.double().mean(0)
    xc, yc = x - mx.float(), y.double() - my
    if n >= d:
        gram = (xc.T @ xc).double() + lam * torch.eye(d, dtype=torch.float64)
        w = torch.linalg.solve(gram, (xc.T @ yc.float()).double())
    else:
        gram = (xc @ xc.T).double() + lam * torch.eye(n, dtype=torch.float64)
        w = (xc.T @ torch.linalg.solve(gram, yc).float()).double()
    return w.float(), (my - mx @ w).float()


def ridge_fit_chunks(
    chunks: Iterable[tuple[Tensor, Tensor]], dim: int, targets: int, lam: float, *, block: int = 4096
) -> tuple[Tensor, Tensor]:
    """:func:`ridge_fit` in the primal from streamed ``(x [n, D], y [n, T])`` chunks.

    Memory is ``D x D`` whatever the number of examples: used when they outnumber
    the dimensions and would not fit in memory at once. Chunks are gathered into
    blocks of ``block`` rows so the ``X'X`` products are few large float32 GEMMs;
    rows are shifted by the first block's mean first, so subtracting the mean at
    the end does not cancel away float32 precision (pool5 features are all >= 0).
    """
    sxx = torch.zeros(dim, dim)
    sxy = torch.zeros(dim, targets, dtype=torch.float64)
    sx = torch.zeros(dim, dtype=torch.float64)
    sy = torch.zeros(targets, dtype=torch.float64)
    shift: Tensor | None = None
    n = 0

    def add(xb: Tensor, yb: Tensor) -> None:
        nonlocal shift, n
        shift = xb.mean(0) if shift is None else shift
        xs = xb - shift
        sxx.addmm_(xs.T, xs)
        sxy.add_((xs.T @ yb.float()).double())
        sx.add_(xs.sum(0, dtype=torch.float64))
        sy.add_(yb.sum(0, dtype=torch.float64))
        n += xb.shape[0]

    pending: list[tuple[Tensor, Tensor]] = []
    for x, y in chunks:
        pending.append((x.float(), y))
        if sum(len(p[0]) for p in pending) >= block:
            add(torch.cat([p[0] for p in pending]), torch.cat([p[1] for p in pending]))
            pending = []
    if pending:
        add(torch.cat([p[0] for p in pending]), torch.cat([p[1] for p in pending]))
    if n == 0:
        return torch.zeros(dim, targets), torch.zeros(targets)
    mx, my = sx / n, sy / n  # mx: mean of the shifted rows
    # centred moments: sum (x - m)(x - m)' = Sxx - n mx mx' (shift-invariant)
    gram = sxx.double() - n * torch.outer(mx, mx) + lam * torch.eye(dim, dtype=torch.float64)
    w = torch.linalg.solve(gram, sxy - n * torch.outer(mx, my))
    return w.float(), (my - (mx + shift.double()) @ w).float()


def regression_examples(
    proposals: Tensor, gt_boxes: Tensor, gt_labels: Tensor, *, min_iou: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Pick the proposals that train the regressors.

    Args:
        proposals: ``[P, 4]`` regions of one image (ground-truth boxes may be among them).
        gt_boxes, gt_labels: ``[G, 4]``, ``[G]``.
        min_iou: a proposal is used when its best IoU with a gt box exceeds this (0.6).
    Returns:
        indices into ``proposals`` ``[N]``, their class ``[N]`` and matched gt box ``[N, 4]``.
    """
    if gt_boxes.shape[0] == 0 or proposals.shape[0] == 0:
        empty = torch.zeros(0, dtype=torch.int64)
        return empty, empty, torch.zeros(0, 4)
    best, match = box_iou(proposals, gt_boxes).max(dim=1)  # [P]
    idx = torch.nonzero(best > min_iou).flatten()
    return idx, gt_labels[match[idx]], gt_boxes[match[idx]]
