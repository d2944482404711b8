"""Verdicts on claims from per-seed values: intervals, orders, ratios, insensitivity, untestable claims."""
import math

import pytest

from harness.config.claims import Insensitive, Order, Ratio
from harness.report.verdicts import (
    CONTRADICTED,
    INCONCLUSIVE,
    NOT_TESTABLE,
    REPRODUCED,
    interval,
    judge,
)


def test_interval_is_students_t():
    iv = interval([0.70, 0.72, 0.74])
    sd = 0.02
    assert iv.mean == pytest.approx(0.72)
    assert iv.high - iv.mean == pytest.approx(4.303 * sd / math.sqrt(3))
    assert interval([0.5]).known is False and interval([]) is None


@pytest.mark.parametrize("a, b, verdict", [
    ([0.80, 0.81, 0.82], [0.70, 0.71, 0.72], REPRODUCED),
    ([0.70, 0.71, 0.72], [0.80, 0.81, 0.82], CONTRADICTED),
    ([0.70, 0.80, 0.75], [0.72, 0.78, 0.74], INCONCLUSIVE),
    ([0.80], [0.70], INCONCLUSIVE),  # one seed: no interval
])
def test_order(a, b, verdict):
    claim = Order("a beats b", rows=("a", "b"))
    assert judge(claim, {"a": a, "b": b}, "cpu").verdict == verdict


def test_at_least_accepts_overlap_but_not_a_clear_loss():
    claim = Order("a matches or beats b", rows=("a", "b"), at_least=True)
    assert judge(claim, {"a": [0.70, 0.80, 0.75], "b": [0.72, 0.78, 0.74]}, "cpu").verdict == REPRODUCED
    assert judge(claim, {"a": [0.60, 0.61, 0.62], "b": [0.72, 0.78, 0.74]}, "cpu").verdict == CONTRADICTED


def test_three_way_order_needs_every_pair():
    claim = Order("a > b > c", rows=("a", "b", "c"))
    vals = {"a": [0.9, 0.91, 0.92], "b": [0.8, 0.81, 0.82], "c": [0.7, 0.71, 0.72]}
    assert judge(claim, vals, "cpu").verdict == REPRODUCED
    vals["c"] = [0.79, 0.80, 0.83]
    assert judge(claim, vals, "cpu").verdict == INCONCLUSIVE


def test_ratio():
    claim = Ratio("a is 100x slower", numerator="a", denominator="b", factor=100)
    assert judge(claim, {"a": [2.0, 2.1, 2.05], "b": [0.010, 0.011, 0.0105]}, "cpu").verdict == REPRODUCED
    assert judge(claim, {"a": [0.5, 0.52, 0.51], "b": [0.010, 0.011, 0.0105]}, "cpu").verdict == CONTRADICTED
    assert "ratio" in judge(claim, {"a": [1.0, 1.1], "b": [0.010, 0.0101]}, "cpu").detail


def test_insensitive():
    claim = Insensitive("lambda does not matter", rows=("1", "10", "100"), tolerance=0.02)
    same = {"1": [0.80, 0.801, 0.802], "10": [0.803, 0.804, 0.805], "100": [0.806, 0.807, 0.808]}
    assert judge(claim, same, "cpu").verdict == REPRODUCED
    apart = {**same, "100": [0.70, 0.701, 0.702]}
    assert judge(claim, apart, "cpu").verdict == CONTRADICTED


def test_untestable_and_missing_rows():
    claim = Order("5 fps on a GPU", rows=("a", "b"), testable_at=("paper",), why_not="needs a GPU and VGG16")
    v = judge(claim, {"a": [1, 2], "b": [1, 2]}, "cpu")
    assert v.verdict == NOT_TESTABLE and v.detail == "needs a GPU and VGG16"
    assert judge(Order("x", rows=("a", "b")), {"a": [0.5, 0.6]}, "cpu").verdict == INCONCLUSIVE
