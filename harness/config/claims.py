"""The papers' claims as checkable statements about a preset's rows.

A preset states what its paper claims as orderings, ratios or insensitivity over
its rows; :mod:`harness.report.verdicts` then gives each claim a verdict from the
rows' runs (mean ± 95 % confidence interval over seeds):

- :class:`Order`: ``rows[0] > rows[1] > ...`` on a metric (``at_least``: ``>=``, a tie within the
  intervals counts as agreement, e.g. "RPN 300 >= selective search 2000");
- :class:`Ratio`: ``row a / row b >= factor`` on a metric where lower is better (test seconds), e.g.
  "R-CNN / Fast R-CNN test time >= 100x";
- :class:`Insensitive`: every row within ``tolerance`` of the others, e.g. "lambda insensitive within 1..100".

``testable_at`` lists the scales where the claim can be tested; elsewhere the claim is shown with
``why_not`` instead of a verdict (e.g. fps figures need a GPU and VGG16). ``pretrained_only``: a claim
about pre-trained features (fine-tune or not, which layers), not testable on runs from random init, where
the frozen or not-fine-tuned layers hold random features.
"""
from __future__ import annotations

from dataclasses import dataclass

SCALES = ("cpu", "paper")


@dataclass(frozen=True)
class Claim:
    """What the paper says (``text``, in its words) and where it can be tested."""

    text: str
    testable_at: tuple[str, ...] = SCALES
    why_not: str = ""
    pretrained_only: bool = False


@dataclass(frozen=True)
class Order(Claim):
    rows: tuple[str, ...] = ()
    metric: str = "map50_voc07"
    at_least: bool = False  # ">=": agreement within the intervals is not a contradiction


@dataclass(frozen=True)
class Ratio(Claim):
    numerator: str = ""
    denominator: str = ""
    factor: float = 1.0
    metric: str = "test_s"  # numerator / denominator of a lower-is-better metric


@dataclass(frozen=True)
class Insensitive(Claim):
    rows: tuple[str, ...] = ()
    tolerance: float = 0.01  # in the metric's units (mAP: 0.01 = one point)
    metric: str = "map50_voc07"


def rows_named(claim: Claim) -> tuple[str, ...]:
    """Every row label a claim refers to (a test checks each names a row of its preset)."""
    if isinstance(claim, Ratio):
        return (claim.numerator, claim.denominator)
    return tuple(getattr(claim, "rows", ()))
