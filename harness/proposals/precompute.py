"""The selective-search proposal stage: cached lookups per sample and parallel precomputation.

Selective search runs outside the network, on the data side: a
:class:`SelectiveSearchProvider` hangs on a dataset (``proposal_provider``) and
gives each sample its proposals in the original image frame, from the cache or
computed on a miss; the dataset's transforms then resize and flip them with the
image. :func:`precompute` fills the cache for whole splits in worker processes
(``harness proposals``, and ``harness run`` before training); it skips entries
already cached, so an interrupted run resumes where it stopped.

Shape shorthand: P = proposals of one image.
"""
from __future__ import annotations

import concurrent.futures as futures
import copy
import multiprocessing
import os
import signal
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import torch
from torch import Tensor

from detectors.selective_search import _libc, selective_search
from harness.data.base import DetectionDataset
from harness.proposals.cache import CacheEntry, ProposalCache, image_digest

HIT, COMPUTED, BUSY = "hit", "computed", "busy"


def lookup_or_compute(cache: ProposalCache, image: np.ndarray, *, wait: bool = True) -> tuple[CacheEntry | None, str]:
    """The cached entry of ``image`` (RGB ``uint8 [H, W, 3]``), computing and storing it on a miss.

    A miss is computed under the entry's claim (:meth:`ProposalCache.claim`): when another process is
    computing the same entry, this one waits for it and reads its result (``wait=True``), or returns
    ``(None, "busy")`` at once (``wait=False``, to come back to it later).

    Returns the entry and ``"hit"`` or ``"computed"`` (a corrupt entry counts as computed).
    """
    digest = image_digest(image)
    entry = cache.load(digest)
    if entry is not None:
        return entry, HIT
    with cache.claim(digest, wait=wait) as mine:
        if not mine:
            return None, BUSY
        entry = cache.load(digest)  # stored by the process whose claim we waited for
        if entry is not None:
            return entry, HIT
        start = time.perf_counter()
        boxes = selective_search(image, cache.params)
        entry = CacheEntry(boxes, time.perf_counter() - start, (int(image.shape[0]), int(image.shape[1])))
        cache.store(digest, entry)
    return cache.kept(entry), COMPUTED


class SelectiveSearchProvider:
    """Dataset hook ``provider(index, image) -> float32 [P, 4]`` (original frame), cached.

    Picklable (it holds only the cache's folder and parameters), so DataLoader
    workers can use it. ``seconds[index]`` is the selective-search time of each
    image this process looked up: stored in the entry when it was computed
    (measured once, in one thread), not the cache read time.
    """

    name = "selective_search"

    def __init__(self, cache: ProposalCache) -> None:
        self.cache = cache
        self.seconds: dict[int, float] = {}
        self.hits = self.computed = 0

    def __call__(self, index: int, image: np.ndarray) -> Tensor:
        entry, status = lookup_or_compute(self.cache, image)
        self.seconds[index] = entry.compute_s
        if status == HIT:
            self.hits += 1
        else:
            self.computed += 1
        return entry.boxes


@dataclass
class PrecomputeResult:
    """What one precomputation pass did.

    Attributes:
        images: images visited; hits: already cached (skipped); computed: searched now.
        seconds, counts: per visited image, in input order: selective-search compute
            seconds (from the entry) and number of proposals.
        wall_s: elapsed time of the whole pass (all datasets of the call together).
    """

    images: int = 0
    hits: int = 0
    computed: int = 0
    wall_s: float = 0.0
    seconds: list[float] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)

    @property
    def proposals_per_image(self) -> float:
        return float(np.mean(self.counts)) if self.counts else 0.0

    @property
    def compute_s_per_image(self) -> float | None:
        """Median selective-search seconds per image (from the entries, hits included)."""
        return statistics.median(self.seconds) if self.seconds else None

    def as_dict(self) -> dict[str, Any]:
        return {
            "images": self.images,
            "hits": self.hits,
            "computed": self.computed,
            "proposals_per_image": self.proposals_per_image,
            "compute_s_per_image_median": self.compute_s_per_image,
        }


def pass_summary(results: Sequence[PrecomputeResult]) -> dict[str, Any]:
    """Totals of one :func:`precompute` call: images, computed, wall seconds, images per second."""
    images = sum(r.images for r in results)
    wall = results[0].wall_s if results else 0.0
    return {
        "images": images,
        "computed": sum(r.computed for r in results),
        "wall_s": wall,
        "images_per_s": images / wall if wall > 0 else None,
    }


# Worker-process state, set once per worker by the pool initializer: the
# datasets travel once per worker, tasks carry only an index.
_WORKER: dict[str, Any] = {}


def _init_worker(datasets: Sequence[DetectionDataset], cache: ProposalCache) -> None:
    # Ctrl-C goes to the whole process group: the parent alone decides to stop,
    # workers finish their current image (a whole entry) and exit quietly.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # one thread per process: parallelism comes from the processes themselves
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    retain_freed_memory()
    _WORKER.update(datasets=datasets, cache=cache)


# glibc mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def retain_freed_memory(mmap_threshold: int = 32 << 20, trim_threshold: int = 64 << 20) -> bool:
    """Keep this process's freed heap memory for reuse instead of giving it back to the OS.

    Selective search allocates and frees tens of MB of image-sized buffers per
    image. With glibc's defaults the freed memory is returned to the kernel
    (top-of-heap trimming, unmapped large blocks), so every image faults in
    about 7,000 fresh zeroed pages: ~8 % of its time, measured on this project's
    2-core VM. Raising both thresholds makes the buffers reusable. Only for
    dedicated worker processes: glibc cannot switch its adaptive thresholds
    back on, so the main process is never tuned. Returns whether it took
    effect (``False`` where the C library is not glibc).
    """
    libc = _libc()
    if libc is None or not hasattr(libc, "mallopt"):
        return False
    return bool(libc.mallopt(_M_MMAP_THRESHOLD, mmap_threshold)) and bool(
        libc.mallopt(_M_TRIM_THRESHOLD, trim_threshold)
    )


def _work(task: tuple[int, int], wait: bool = True) -> tuple[int, int, str, int, float]:
    which, index = task
    image = _WORKER["datasets"][which].load_image(index)
    entry, status = lookup_or_compute(_WORKER["cache"], image, wait=wait)
    if entry is None:  # busy: another process is computing it
        return which, index, status, 0, 0.0
    return which, index, status, int(entry.boxes.shape[0]), entry.compute_s


def _pool_context() -> multiprocessing.context.BaseContext:
    """Workers forked from a fresh server process, never from this one.

    A process that has used OpenCV's or torch's thread pools cannot be forked
    safely: the child inherits the pools' locks but not their threads, and
    OpenCV deadlocks in ``setNumThreads``. The forkserver is a clean process
    that imports this module once (a one-time ~2 s per session); each worker
    is then forked from it in milliseconds.
    """
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload([__name__])
        return context
    return multiprocessing.get_context("spawn")


def _portable(dataset: DetectionDataset) -> DetectionDataset:
    """A shallow copy that workers can unpickle: they only call ``load_image``."""
    light = copy.copy(dataset)
    light.transforms, light.proposal_provider = None, None
    return light


def default_workers() -> int:
    """Usable cores (the affinity mask where the OS has one)."""
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


def precompute(
    datasets: Sequence[DetectionDataset],
    cache: ProposalCache,
    *,
    workers: int | None = None,
    progress: Any = None,
    limits: Sequence[int | None] | None = None,
    shard: tuple[int, int] = (0, 1),
) -> list[PrecomputeResult]:
    """Make sure every image of ``datasets`` has a cache entry; one result per dataset.

    Args:
        datasets: splits to cover (their original images: ``load_image``).
        cache: where entries live.
        workers: worker processes (``None``: one per usable core; 0: in this process,
            no pool: library use and small jobs). One worker still runs in its own
            process: its heap is tuned for selective search (:func:`retain_freed_memory`),
            which the main process's is not, so ``--workers 1`` and ``--workers N`` run the
            same code and their throughputs compare like with like.
        progress: ``progress(desc, total)`` -> bar with ``advance(n)`` and ``close()``.
        limits: per dataset, only its first ``limit`` images (``None``: all).
        shard: ``(rank, ranks)``: only the images whose index is ``rank`` modulo ``ranks``
            (torchrun processes splitting the work).
    Raises:
        KeyboardInterrupt: after pending work is cancelled; finished entries stay cached.
    """
    workers = default_workers() if workers is None else workers
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    limits = limits or [None] * len(datasets)
    counts = [len(ds) if lim is None else min(len(ds), lim) for ds, lim in zip(datasets, limits)]
    rank, ranks = shard
    tasks = [(d, i) for d, n in enumerate(counts) for i in range(rank, n, ranks)]
    results = [PrecomputeResult() for _ in datasets]
    slots: dict[tuple[int, int], int] = {}
    for d, i in tasks:
        slots[(d, i)] = results[d].images
        results[d].images += 1
        results[d].seconds.append(0.0)
        results[d].counts.append(0)
    bar = progress("proposals", len(tasks)) if progress else None
    start = time.perf_counter()

    busy: list[tuple[int, int]] = []

    def collect(which: int, index: int, status: str, num: int, seconds: float) -> None:
        if status == BUSY:  # another process computes it now: read it after the rest
            busy.append((which, index))
            return
        res, slot = results[which], slots[(which, index)]
        res.seconds[slot], res.counts[slot] = seconds, num
        if status == HIT:
            res.hits += 1
        else:
            res.computed += 1
        if bar:
            bar.advance(1)

    try:
        if workers == 0:
            threads = cv2.getNumThreads()
            cv2.setNumThreads(1)
            try:
                for wait, todo in ((False, tasks), (True, busy)):  # busy fills up during the first pass
                    for which, index in list(todo) if wait else todo:
                        entry, status = lookup_or_compute(cache, datasets[which].load_image(index), wait=wait)
                        collect(which, index, status, *((int(entry.boxes.shape[0]), entry.compute_s)
                                                        if entry is not None else (0, 0.0)))
            finally:
                cv2.setNumThreads(threads)
        else:
            _run_pool(datasets, cache, tasks, workers, collect, busy)
    finally:
        if bar:
            bar.close()
        wall = time.perf_counter() - start
        for res in results:
            res.wall_s = wall
    return results


def _run_pool(
    datasets: Sequence[DetectionDataset],
    cache: ProposalCache,
    tasks: list[tuple[int, int]],
    workers: int,
    collect: Callable[[int, int, str, int, float], None],
    busy: list[tuple[int, int]],
) -> None:
    """Run ``tasks`` (dataset, index) in ``workers`` processes; ``collect`` each result as it comes.

    Entries another process is computing (``collect`` puts them in ``busy``) are skipped in the
    first round and waited for in a second one.

    On any exception (Ctrl-C included) pending tasks are cancelled and running
    ones finish their image (whole entries only) before the exception goes on.
    """
    pool = futures.ProcessPoolExecutor(
        max_workers=workers,
        mp_context=_pool_context(),
        initializer=_init_worker,
        initargs=([_portable(ds) for ds in datasets], cache),
    )
    try:
        for wait, todo in ((False, tasks), (True, busy)):
            pending = [pool.submit(_work, task, wait) for task in list(todo)]
            for done in futures.as_completed(pending):
                collect(*done.result())
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown(wait=True)
