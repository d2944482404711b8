"""``harness bench-proposals``: throughput of the parallel proposal stage and the cache's worth.

Two figures the issue asks for, measured in one process on one machine:

- **parallel speed-up**: images per second of :func:`~harness.proposals.precompute.precompute`
  with ``workers`` worker processes over one worker process, both from an empty
  cache (target >= 1.8x at 2 workers). The same search in the main process
  (``workers=0``, no pool) is timed too and recorded beside them
  (``in_process_vs_1_worker``): it shows what the workers' heap tuning is worth;
- **cache hit vs recompute**: median seconds of a cache hit (hash the decoded
  image, read and verify its entry) against the median seconds of selective
  search on the same images (target >= 100x). Decoding the image is needed by
  both paths (the sample needs its pixels anyway) and is reported separately.

Images are decoded once, untimed, before anything is timed, so the OS file
cache is warm for every pass; the workers' forkserver is started before the
timed passes too (a one-time cost per session, recorded as ``worker_warmup_s``).
Each pass is repeated and the best throughput counts. The cold passes write
to temporary caches that are removed afterwards; the real cache is not touched.
"""
from __future__ import annotations

import os
import statistics
import tempfile
import time
from collections.abc import Sequence
from typing import Any

from detectors.selective_search import SelectiveSearchParams
from harness.data.base import DetectionDataset
from harness.proposals.cache import ProposalCache, image_digest
from harness.proposals.precompute import precompute

TARGETS = {"parallel_speedup": 1.8, "hit_vs_recompute": 100.0}


def _load(datasets: Sequence[DetectionDataset], limits: Sequence[int | None]) -> list[tuple[int, int]]:
    """Every (dataset, index) the bench covers, each image decoded once (warms the file cache)."""
    items = []
    for d, (ds, lim) in enumerate(zip(datasets, limits)):
        for i in range(len(ds) if lim is None else min(lim, len(ds))):
            ds.load_image(i)
            items.append((d, i))
    return items


def bench_proposals(
    datasets: Sequence[DetectionDataset],
    params: SelectiveSearchParams,
    *,
    workers: int = 2,
    limit: int | None = None,
    repeats: int = 2,
    progress: Any = None,
) -> dict[str, Any]:
    """Measure both figures; returns the bench record's body (without device and versions).

    Args:
        datasets: splits whose original images are searched.
        params: selective-search parameters (as ``harness run`` would use them).
        workers: processes of the parallel pass (compared against 1).
        limit: only the first ``limit`` images of each split.
        repeats: each pass runs this many times, rotating the main process, 1 and
            ``workers`` processes; the best throughput of each counts (on a shared
            machine other jobs only ever slow a pass down).
        progress: ``progress(desc, total)`` bar factory, shown for each pass.
    """
    limits = [limit] * len(datasets)
    items = _load(datasets, limits)
    load_before = os.getloadavg()
    passes: dict[int, list[dict[str, float]]] = {0: [], 1: [], workers: []}
    best: dict[int, list] = {}
    with tempfile.TemporaryDirectory(prefix="bench-proposals-") as tmp:
        # start the workers' forkserver (it imports the harness once per session): untimed
        start = time.perf_counter()
        precompute(datasets[:1], ProposalCache(os.path.join(tmp, "warmup"), params), workers=workers,
                   limits=[workers])
        warmup_s = time.perf_counter() - start
        for r in range(repeats):
            for n in (0, 1, workers):
                cache = ProposalCache(os.path.join(tmp, f"repeat{r}-workers{n}"), params)
                runs = precompute(datasets, cache, workers=n, progress=progress, limits=limits)
                wall = runs[0].wall_s
                passes[n].append({"wall_s": wall, "images_per_s": len(items) / wall})
                if wall <= min(p["wall_s"] for p in passes[n]):
                    best[n] = runs
        # search time per image from the best one-worker pass: no contention between workers
        search_s = [s for r in best[1] for s in r.seconds]
        proposals = [c for r in best[1] for c in r.counts]
        hit_s, decode_s = [], []
        for d, i in items:  # the last pass's cache holds every entry
            start = time.perf_counter()
            image = datasets[d].load_image(i)
            middle = time.perf_counter()
            entry = cache.load(image_digest(image))
            end = time.perf_counter()
            if entry is None:
                raise RuntimeError("bench: a freshly written cache entry could not be read back")
            decode_s.append(middle - start)
            hit_s.append(end - middle)
    hit, search = statistics.median(hit_s), statistics.median(search_s)
    best_rate = {n: max(p["images_per_s"] for p in runs) for n, runs in passes.items()}
    ratios = {"parallel_speedup": best_rate[workers] / best_rate[1], "hit_vs_recompute": search / hit}
    return {
        "kind": "selective_search_proposals",
        "datasets": [ds.name for ds in datasets],
        "images": len(items),
        "workers": workers,
        "params": params.fingerprint(),
        "repeats": repeats,
        "passes": {("in_process" if n == 0 else f"workers_{n}"): v for n, v in passes.items()},
        "in_process_vs_1_worker": best_rate[0] / best_rate[1],
        "proposals_per_image": statistics.fmean(proposals) if proposals else 0.0,
        "search_s_per_image_median": search,
        "cache_hit_s_per_image_median": hit,
        "decode_s_per_image_median": statistics.median(decode_s),
        "ratios": ratios,
        "targets": TARGETS,
        "met": {k: ratios[k] >= TARGETS[k] for k in TARGETS},
        "worker_warmup_s": warmup_s,
        "loadavg_before": list(load_before),
        "loadavg_after": list(os.getloadavg()),
        "cpu_count": os.cpu_count(),
    }
