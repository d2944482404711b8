"""One timer utility for every measurement the harness records.

Wall-clock with ``time.perf_counter``; on CUDA the device is synchronised before
and after each timed block, so queued kernels are charged to the right stage.
Raw samples are kept; summaries are median and p90 (robust on noisy machines).
"""
from __future__ import annotations

import contextlib
import math
import statistics
import time
from collections import defaultdict
from collections.abc import Callable, Iterator

import torch


def synchronize(device: torch.device | str | None) -> None:
    if device is not None and torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def summarize(samples: list[float]) -> dict[str, float | int | None]:
    """``{"median", "p90", "mean", "n"}`` of raw samples in seconds (None when empty)."""
    if not samples:
        return {"median": None, "p90": None, "mean": None, "n": 0}
    ordered = sorted(samples)
    # nearest-rank p90: an observed value, never an interpolation
    p90 = ordered[max(0, math.ceil(0.9 * len(ordered)) - 1)]
    return {"median": statistics.median(ordered), "p90": p90, "mean": statistics.fmean(ordered), "n": len(ordered)}


class StageTimer:
    """Accumulates time per named stage, per item (e.g. per test image).

    Use ``with timer("backbone"): ...`` inside an item, and ``timer.item()`` around
    each item; a stage entered several times within one item is summed. Items run
    while ``warmup`` is set are measured but discarded.

    Attributes:
        samples: stage → one total per (non-warm-up) item, seconds.
    """

    def __init__(self, device: torch.device | str | None = None) -> None:
        self.device = device
        self.samples: dict[str, list[float]] = defaultdict(list)
        self._current: dict[str, float] | None = None
        self.warmup = False

    @contextlib.contextmanager
    def __call__(self, stage: str) -> Iterator[None]:
        watch = Stopwatch(self.device)
        try:
            with watch:
                yield
        finally:
            if self._current is not None:
                self._current[stage] = self._current.get(stage, 0.0) + watch.seconds

    @contextlib.contextmanager
    def item(self, per: int = 1) -> Iterator[None]:
        """Time one item (``per`` images processed together count as ``per`` items)."""
        self._current = {}
        watch = Stopwatch(self.device)
        try:
            with watch:
                yield
        finally:
            self._current["total"] = watch.seconds
            if not self.warmup:
                for stage, seconds in self._current.items():
                    self.samples[stage].extend([seconds / per] * per)
            self._current = None

    def medians(self) -> dict[str, float]:
        """Median seconds per item of each stage (``total`` excluded)."""
        return {k: summarize(v)["median"] for k, v in self.samples.items() if k != "total"}

    def summary(self, stage: str = "total") -> dict[str, float | int | None]:
        return summarize(self.samples.get(stage, []))

    def add_to_items(self, stage: str, seconds: list[float]) -> None:
        """Charge time spent outside the timed blocks to ``stage`` of each recorded item, in order.

        For work done ahead of time per item (selective search runs on the data
        side, and may have run in an earlier process): ``seconds[i]`` is added to
        item ``i``'s ``stage`` and to its ``total``.
        """
        totals = self.samples["total"]
        if len(seconds) != len(totals):
            raise ValueError(f"{len(seconds)} times for {len(totals)} recorded items")
        per_stage = self.samples[stage] or [0.0] * len(totals)
        self.samples[stage] = [a + b for a, b in zip(per_stage, seconds)]
        self.samples["total"] = [a + b for a, b in zip(totals, seconds)]

    def summary_without(self, stage: str) -> dict[str, float | int | None]:
        """Summary of per-item totals minus ``stage`` (e.g. test time without proposals)."""
        totals, parts = self.samples.get("total", []), self.samples.get(stage, [])
        if len(parts) != len(totals):
            return self.summary()
        return summarize([t - p for t, p in zip(totals, parts)])


class Stopwatch:
    """Elapsed wall time of a block: ``with Stopwatch(device) as sw: ...; sw.seconds``."""

    def __init__(self, device: torch.device | str | None = None) -> None:
        self.device, self.seconds = device, 0.0

    def __enter__(self) -> "Stopwatch":
        synchronize(self.device)
        self._start = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        synchronize(self.device)
        self.seconds = time.perf_counter() - self._start


def timed(fn: Callable[[], object], device: torch.device | str | None = None) -> float:
    """Seconds one call of ``fn`` takes (CUDA synchronised before and after)."""
    with Stopwatch(device) as watch:
        fn()
    return watch.seconds
