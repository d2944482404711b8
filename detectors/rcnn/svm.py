"""Per-class linear SVMs with hard-negative mining (R-CNN section 2.3, appendix B).

One linear SVM per class on cached CNN features. Positives are the class's
ground-truth boxes only; negatives are regions whose IoU with every box of the
class is below 0.3 (appendix B explains both choices). There are far too many
negatives to hold at once (about 2000 per image), so training follows the
standard hard-negative mining of the R-CNN code (``rcnn_train.m``): train on a
working set, stream every cached negative through the current model, add those
inside the margin (score > -1), drop easy ones (score < -1.2), retrain, and stop
when a pass finds no new hard negative. At that point every negative outside
the working set has zero loss, so the working-set solution *is* the SVM of the
full negative set.

Solver: L2-regularised squared-hinge (L2-loss) SVM, minimised in the primal with
L-BFGS in torch:  ``0.5 |w|^2 + C sum_i c_i max(0, 1 - y_i (w x_i + b))^2``, with
``c_i = pos_weight`` for positives (the R-CNN code weights positives by 2) and an
unregularised bias. R-CNN used liblinear's L1-loss hinge (``-s 3``); the squared
hinge is smooth, so L-BFGS reaches the optimum reliably, and the margin (the
scores that mining compares with -1) means the same.

Features are scaled so their mean L2 norm is 20 before training (the R-CNN code's
``rcnn_scale_features``): C = 0.001 and the margin thresholds are set for that scale.

Shape shorthand: N = training examples, n = regions of one streamed chunk,
D = feature size, K = classes.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import torch
from torch import Tensor

TARGET_FEATURE_NORM = 20.0  # rcnn_scale_features: mean feature norm after scaling
HARD_THRESH = -1.0  # a negative scoring above this is inside the margin: hard
EASY_THRESH = -1.2  # a cached negative below this is evicted (rcnn_train.m: evict_thresh)

# One streamed chunk: features [n, D], negative mask [n, K] (region is a negative for
# class k), ids int64 [n] unique over the whole stream (to avoid adding a region twice).
NegativeChunk = tuple[Tensor, Tensor, Tensor]


def fit_linear_svm(
    x: Tensor,
    y: Tensor,
    *,
    C: float,
    pos_weight: float = 2.0,
    max_iter: int = 300,
    init: tuple[Tensor, float] | None = None,
) -> tuple[Tensor, float]:
    """Squared-hinge linear SVM by L-BFGS.

    Args:
        x: ``[N, D]`` features (already scaled).
        y: ``[N]`` labels in {-1, +1}.
        C: loss weight (the inverse of the regularisation strength).
        pos_weight: extra loss weight of positives.
        init: warm start ``(w [D], b)`` (the previous mining round's model).
    Returns:
        ``(w [D], b)``.
    """
    x = x.float()
    y = y.to(x)
    weight = torch.where(y > 0, C * pos_weight, C)
    w = (init[0].clone().to(x) if init is not None else x.new_zeros(x.shape[1])).requires_grad_(True)
    b = torch.tensor(float(init[1]) if init is not None else 0.0, dtype=x.dtype, requires_grad=True)
    opt = torch.optim.LBFGS(
        [w, b], lr=1.0, max_iter=max_iter, history_size=20, tolerance_grad=1e-7, tolerance_change=1e-10,
        line_search_fn="strong_wolfe",
    )

    def closure() -> Tensor:
        opt.zero_grad()
        slack = (1.0 - y * (x @ w + b)).clamp(min=0.0)
        loss = 0.5 * (w * w).sum() + (weight * slack * slack).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return w.detach(), float(b.detach())


@dataclass
class MiningStats:
    """What hard-negative mining did, per class.

    Attributes:
        rounds: mining passes over the cache (after the initial fit).
        new_hard: per pass, the hard negatives added (summed over classes).
        working_set: per class, negatives held at the end.
        converged: the last pass found no new hard negative for any class.
    """

    rounds: int = 0
    new_hard: list[int] = field(default_factory=list)
    working_set: list[int] = field(default_factory=list)
    converged: bool = False


class _WorkingSet:
    """Negatives of one class held in memory: features ``[M, D]`` and their ids ``[M]``.

    Additions are buffered and concatenated once per pass (:meth:`flush`), not per chunk.
    """

    def __init__(self, dim: int) -> None:
        self.x, self.ids = torch.zeros(0, dim), torch.zeros(0, dtype=torch.int64)
        self._pending: list[tuple[Tensor, Tensor]] = []

    def add(self, x: Tensor, ids: Tensor) -> int:
        """Queue the regions not held yet (ids are unique within one pass); returns how many."""
        fresh = ~torch.isin(ids, self.ids)
        self._pending.append((x[fresh], ids[fresh]))
        return int(fresh.sum())

    def flush(self) -> None:
        if self._pending:
            xs, ids = zip(*self._pending)
            self.x, self.ids = torch.cat((self.x, *xs)), torch.cat((self.ids, *ids))
            self._pending = []

    def keep(self, mask: Tensor) -> None:
        self.x, self.ids = self.x[mask], self.ids[mask]


def train_svms_with_mining(
    positives: list[Tensor],
    negatives: Callable[[], Iterable[NegativeChunk]],
    *,
    C: float,
    pos_weight: float = 2.0,
    rounds: int = 3,
    initial_per_chunk: int = 32,
    max_negatives: int = 200_000,
    generator: torch.Generator | None = None,
    log: Callable[[str], None] | None = None,
) -> tuple[Tensor, Tensor, MiningStats]:
    """Train K one-vs-rest SVMs, mining hard negatives from a stream.

    Args:
        positives: K tensors ``[P_k, D]``: features of class k's ground-truth boxes.
        negatives: returns a fresh iterable of chunks ``(x [n, D], neg_mask [n, K], ids [n])``
            each time it is called (one pass over the on-disk cache).
        C, pos_weight: see :func:`fit_linear_svm`.
        rounds: mining passes after the initial fit (R-CNN: one pass, retraining
            every 2000 new negatives; here every pass is followed by a retrain).
        initial_per_chunk: negatives per chunk (per class) drawn at random for the
            initial fit; an all-zero model would call every negative hard.
        max_negatives: cap on a class's working set (the hardest are kept).
    Returns:
        ``W [K, D]``, ``b [K]`` and :class:`MiningStats`.
    """
    num_classes, dim = len(positives), positives[0].shape[1]
    sets = [_WorkingSet(dim) for _ in range(num_classes)]
    for x, mask, ids in negatives():
        x = x.float()
        for k in range(num_classes):
            idx = torch.nonzero(mask[:, k]).flatten()
            idx = idx[torch.randperm(idx.numel(), generator=generator)[:initial_per_chunk]]
            sets[k].add(x[idx], ids[idx])
    for s in sets:
        s.flush()
    models = [_fit_class(positives[k], sets[k], C, pos_weight, None) for k in range(num_classes)]
    stats = MiningStats()
    for _ in range(rounds):
        w, b = torch.stack([m[0] for m in models]), torch.tensor([m[1] for m in models])
        added = [0] * num_classes
        for x, mask, ids in negatives():
            hard = mask & (x.float() @ w.T + b > HARD_THRESH)  # [n, K]
            for k in torch.nonzero(hard.any(dim=0)).flatten().tolist():
                idx = torch.nonzero(hard[:, k]).flatten()
                added[k] += sets[k].add(x[idx].float(), ids[idx])
        for s in sets:
            s.flush()
        stats.rounds += 1
        stats.new_hard.append(sum(added))
        if log is not None:
            log(f"hard-negative pass {stats.rounds}: {sum(added)} new hard negatives")
        if sum(added) == 0:
            stats.converged = True
            break
        for k in range(num_classes):
            if added[k]:
                models[k] = _fit_class(positives[k], sets[k], C, pos_weight, models[k])
                _evict(sets[k], models[k], max_negatives)
    stats.working_set = [int(s.ids.numel()) for s in sets]
    w, b = torch.stack([m[0] for m in models]), torch.tensor([m[1] for m in models])
    return w, b, stats


def _fit_class(
    positives: Tensor, negatives: _WorkingSet, C: float, pos_weight: float, init: tuple[Tensor, float] | None
) -> tuple[Tensor, float]:
    x = torch.cat((positives.float(), negatives.x))
    y = torch.cat((torch.ones(positives.shape[0]), -torch.ones(negatives.x.shape[0])))
    if x.shape[0] == 0:
        return torch.zeros(positives.shape[1]), -1.0
    return fit_linear_svm(x, y, C=C, pos_weight=pos_weight, init=init)


def _evict(negatives: _WorkingSet, model: tuple[Tensor, float], max_negatives: int) -> None:
    """Drop easy negatives (score < -1.2); then, above the cap, keep the hardest."""
    scores = negatives.x @ model[0] + model[1]
    negatives.keep(scores >= EASY_THRESH)
    if negatives.ids.numel() > max_negatives:
        scores = negatives.x @ model[0] + model[1]
        hardest = torch.zeros_like(scores, dtype=torch.bool)
        negatives.keep(hardest.index_fill_(0, scores.topk(max_negatives).indices, True))


def scale_for_norm(mean_norm: float) -> float:
    """Factor that brings features of mean L2 norm ``mean_norm`` to :data:`TARGET_FEATURE_NORM`."""
    return TARGET_FEATURE_NORM / mean_norm if mean_norm > 0 else 1.0
