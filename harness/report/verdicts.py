"""Verdicts on the papers' claims from our runs: mean ± 95 % confidence interval per row.

For each claim (:mod:`harness.config.claims`) and the metric values of its rows (one per seed):

- **reproduced in direction**: the intervals say what the paper says (for an order, each pair's
  intervals are apart in the paper's direction; ``>=`` claims also accept overlapping intervals);
- **contradicted**: the intervals are apart in the other direction (or, for insensitivity, two rows
  differ by more than the tolerance beyond their intervals; for a ratio, the whole interval of the
  ratio is below the factor);
- **inconclusive**: the intervals overlap (or a row has too few runs for an interval: fewer than 2).

The interval is Student's t at 95 % over the seeds' values (n - 1 degrees of freedom).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from harness.config.claims import Claim, Insensitive, Order, Ratio

REPRODUCED, CONTRADICTED, INCONCLUSIVE, NOT_TESTABLE = (
    "reproduced in direction", "contradicted", "inconclusive", "not testable here")
# two-sided 95 % Student's t quantiles for 1..30 degrees of freedom; beyond, the normal's 1.96
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)


@dataclass(frozen=True)
class Interval:
    """Mean and 95 % confidence interval of ``n`` values (``low == high == mean`` when ``n < 2``)."""

    mean: float
    low: float
    high: float
    n: int

    @property
    def known(self) -> bool:
        return self.n >= 2

    def text(self, scale: float = 1.0, digits: int = 1) -> str:
        m = self.mean * scale
        if not self.known:
            return f"{m:.{digits}f} (n={self.n})"
        return f"{m:.{digits}f} ± {(self.high - self.mean) * scale:.{digits}f} (n={self.n})"


def interval(values: Sequence[float]) -> Interval | None:
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not vals:
        return None
    n, mean = len(vals), sum(vals) / len(vals)
    if n < 2:
        return Interval(mean, mean, mean, n)
    sd = math.sqrt(sum((v - mean) ** 2 for v in vals) / (n - 1))
    half = (_T975[n - 2] if n - 1 <= len(_T975) else 1.96) * sd / math.sqrt(n)
    return Interval(mean, mean - half, mean + half, n)


@dataclass(frozen=True)
class Verdict:
    claim: Claim
    verdict: str
    detail: str  # the numbers behind it


def _above(a: Interval, b: Interval) -> bool:
    return a.known and b.known and a.low > b.high


def judge(claim: Claim, values: Mapping[str, Sequence[float]], scale: str) -> Verdict:
    """The verdict on ``claim`` from each row's metric values (``values[row label]``) at ``scale``."""
    if scale not in claim.testable_at:
        return Verdict(claim, NOT_TESTABLE, claim.why_not or f"not testable at {scale} scale")
    if isinstance(claim, Ratio):
        return _ratio(claim, values)
    rows = claim.rows  # type: ignore[attr-defined]
    ivs = {r: interval(values.get(r, ())) for r in rows}
    missing = [r for r, iv in ivs.items() if iv is None]
    if missing:
        return Verdict(claim, INCONCLUSIVE, "no ok run yet for " + ", ".join(missing))
    detail = "; ".join(f"{r}: {ivs[r].text(100)}" for r in rows)  # type: ignore[union-attr]
    if isinstance(claim, Order):
        return Verdict(claim, _order([ivs[r] for r in rows], claim.at_least), detail)  # type: ignore[misc]
    if isinstance(claim, Insensitive):
        return Verdict(claim, _insensitive([ivs[r] for r in rows], claim.tolerance), detail)  # type: ignore[misc]
    raise TypeError(f"unknown claim type {type(claim).__name__}")


def _order(ivs: list[Interval], at_least: bool) -> str:
    pairs = list(zip(ivs, ivs[1:]))
    if any(_above(b, a) for a, b in pairs):
        return CONTRADICTED
    if all(_above(a, b) for a, b in pairs):
        return REPRODUCED
    if at_least and all(a.known and b.known and a.high >= b.low for a, b in pairs):
        return REPRODUCED  # ">=": overlapping intervals agree with "matches or beats"
    return INCONCLUSIVE


def _insensitive(ivs: list[Interval], tolerance: float) -> str:
    if not all(iv.known for iv in ivs):
        return INCONCLUSIVE
    if max(iv.low for iv in ivs) - min(iv.high for iv in ivs) > tolerance:
        return CONTRADICTED  # two rows apart by more than the tolerance, whatever the noise
    if max(iv.high for iv in ivs) - min(iv.low for iv in ivs) <= tolerance:
        return REPRODUCED  # every row within the tolerance of every other, noise included
    return INCONCLUSIVE


def _ratio(claim: Ratio, values: Mapping[str, Sequence[float]]) -> Verdict:
    num, den = interval(values.get(claim.numerator, ())), interval(values.get(claim.denominator, ()))
    if num is None or den is None or den.mean <= 0:
        return Verdict(claim, INCONCLUSIVE, "no ok runs of both rows yet")
    ratio = num.mean / den.mean
    detail = (f"{claim.numerator}: {num.text(1, 4)}; {claim.denominator}: {den.text(1, 4)}; "
              f"ratio {ratio:.1f}x (claim >= {claim.factor:g}x)")
    if not (num.known and den.known) or den.low <= 0:
        return Verdict(claim, INCONCLUSIVE, detail)
    low, high = num.low / den.high, num.high / den.low  # the ratio's range over both intervals
    if low >= claim.factor:
        return Verdict(claim, REPRODUCED, detail)
    if high < claim.factor:
        return Verdict(claim, CONTRADICTED, detail)
    return Verdict(claim, INCONCLUSIVE, detail)
