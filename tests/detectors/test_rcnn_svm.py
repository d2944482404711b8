"""Linear SVMs and hard-negative mining on toy features."""
import torch

from detectors.rcnn.svm import (
    HARD_THRESH,
    fit_linear_svm,
    scale_for_norm,
    train_svms_with_mining,
)


def separable(num_pos: int = 40, num_neg: int = 6000, dim: int = 12, gap: float = 3.0, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    direction = torch.randn(dim, generator=g)
    direction /= direction.norm()
    pos = torch.randn(num_pos, dim, generator=g) + gap * direction
    neg = torch.randn(num_neg, dim, generator=g) - gap * direction
    # keep the classes strictly separable: drop the few negatives that stray over
    neg = neg[neg @ direction < 0]
    pos = pos[pos @ direction > 0]
    return pos, neg


def stream(neg: torch.Tensor, chunk: int = 250, num_classes: int = 1):
    """A callable giving a fresh pass over ``neg`` in chunks, as the on-disk cache does."""
    def chunks():
        for start in range(0, neg.shape[0], chunk):
            x = neg[start : start + chunk]
            yield x, torch.ones(x.shape[0], num_classes, dtype=torch.bool), torch.arange(start, start + x.shape[0])
    return chunks


def test_fit_linear_svm_finds_the_margin():
    x = torch.tensor([[-2.0], [-1.0], [1.0], [2.0]])
    y = torch.tensor([-1.0, -1.0, 1.0, 1.0])
    w, b = fit_linear_svm(x, y, C=100.0, pos_weight=1.0)
    scores = x[:, 0] * w[0] + b
    assert torch.allclose(scores[1:3].abs(), torch.ones(2), atol=0.05)  # the support vectors sit on the margin
    assert (scores * y > 0).all()


def test_hard_negative_mining_converges_to_the_full_svm():
    pos, neg = separable()
    passes = []

    def counting():
        passes.append(1)
        return stream(neg)()

    weight, bias, stats = train_svms_with_mining([pos], counting, C=1.0, rounds=10, initial_per_chunk=4,
                                                 generator=torch.Generator().manual_seed(0))
    assert stats.converged and stats.new_hard[-1] == 0
    assert len(passes) == stats.rounds + 1  # the initial sample, then one pass per round
    assert stats.working_set[0] < neg.shape[0] // 10  # only the hard ones are held in memory
    # every negative left out of the working set is outside the margin ...
    assert (neg @ weight[0] + bias[0] <= HARD_THRESH + 1e-4).float().mean() > 0.9
    assert (neg @ weight[0] + bias[0] < 0).all() and (pos @ weight[0] + bias[0] > 0).all()
    # ... so the mined SVM is the SVM of all negatives at once
    x = torch.cat((pos, neg))
    y = torch.cat((torch.ones(pos.shape[0]), -torch.ones(neg.shape[0])))
    full_w, full_b = fit_linear_svm(x, y, C=1.0)
    assert torch.allclose(weight[0], full_w, atol=2e-3 * float(full_w.norm()) + 1e-4)
    assert abs(float(bias[0]) - full_b) < 1e-2


def test_classes_are_mined_separately():
    pos_a, neg = separable(seed=1)
    pos_b = pos_a[:10]
    mask_a = torch.ones(neg.shape[0], dtype=torch.bool)
    mask_b = torch.zeros(neg.shape[0], dtype=torch.bool)  # few regions are negatives for class b
    mask_b[:50] = True

    def chunks():
        yield neg, torch.stack((mask_a, mask_b), 1), torch.arange(neg.shape[0])

    weight, bias, stats = train_svms_with_mining([pos_a, pos_b], chunks, C=1.0, rounds=5)
    assert stats.converged and stats.working_set[1] <= 50
    assert (pos_a @ weight[0] + bias[0] > 0).all() and (pos_b @ weight[1] + bias[1] > 0).all()
    assert (neg @ weight[0] + bias[0] < 0).all() and (neg[:50] @ weight[1] + bias[1] < 0).all()


def test_no_mining_rounds_is_the_initial_fit_only():
    pos, neg = separable(num_neg=1000)
    _, _, stats = train_svms_with_mining([pos], stream(neg), C=1.0, rounds=0, initial_per_chunk=8)
    assert stats.rounds == 0 and not stats.converged and stats.working_set == [8 * 4]


def test_empty_class_gives_a_negative_model():
    _, neg = separable(num_neg=500)
    weight, bias, _ = train_svms_with_mining([torch.zeros(0, neg.shape[1])], stream(neg), C=1.0, rounds=2)
    assert (neg @ weight[0] + bias[0] < 0).all()


def test_feature_scale_targets_norm_20():
    assert scale_for_norm(5.0) == 4.0 and scale_for_norm(0.0) == 1.0
