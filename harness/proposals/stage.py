"""Fast R-CNN's proposal stage inside a run: attach proposals to the data, time them, record them.

The network's ``proposals`` stage for Fast R-CNN only reads boxes the data
layer brought along; the expensive part, selective search, ran on the data
side (possibly in an earlier ``harness proposals``). So that test time per
image still includes it, as in the papers' "selective search + Fast R-CNN"
figures, each test image's selective-search seconds are added to its
``proposals`` stage and total; ``timing.test_s_per_img_without_proposals``
leaves them out. Which seconds (``proposals.test_timing``, stated in
``timing.proposal_time.source``):

- ``live`` (``cpu`` profile): selective search is run again on each test image,
  in this process, one thread, timed, after training and right before the test
  pass (:meth:`ProposalStage.time_test_images`); the boxes are checked against
  the cache entry. Same machine state as the network's timing.
- ``cache`` (``paper`` profile, where a full-size search costs ~2 s): the
  seconds stored in each cache entry, measured once (one thread) when it was
  computed, possibly in another session beside other work.

The cache read time is never counted as proposal time.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import torch

from detectors.selective_search import SelectiveSearchParams, selective_search
from harness.config import PROPOSAL_SOURCE, ProposalConfig, RunConfig
from harness.data.base import DetectionDataset
from harness.evaluation.timing import StageTimer, summarize
from harness.proposals.cache import ProposalCache, image_digest
from harness.proposals.external import FileProposals, load_proposal_file
from harness.proposals.precompute import (
    PrecomputeResult,
    SelectiveSearchProvider,
    default_workers,
    pass_summary,
    precompute,
)
from harness.run import distributed

TIME_SOURCES = {
    "live": "live: selective search re-run and timed on each test image in this run (one thread, "
    "in the run's process, right before the test pass); cache read time excluded",
    "cache": "cache_entry: selective-search seconds stored in each test image's cache entry, measured once "
    "(one thread) when it was computed; cache read time excluded",
}


def selective_search_params(p: ProposalConfig) -> SelectiveSearchParams:
    """The config's selective-search parameters (the cache key's parameter part)."""
    return SelectiveSearchParams(
        mode=p.mode,
        image_min_size=p.image_min_size,
        image_max_size=p.image_max_size,
        max_proposals=p.max_proposals,
        box_min_size=p.box_min_size,
    )


class NetworkProposals:
    """The proposal stage of a detector that makes its own proposals (the RPN): nothing to attach, time
    or record; its proposals are timed inside the network's ``proposals`` stage."""

    name = "rpn"

    def time_test_images(self, test_set: DetectionDataset, *, progress: Any = None) -> None:
        return None

    def fold_test_time(self, timer: StageTimer) -> None:
        return None

    def record_into(self, record: dict[str, Any]) -> None:
        return None


@dataclass
class ProposalStage:
    """Proposals attached to a run's datasets.

    Attributes:
        name: method, the key of ``metrics.proposal_recall`` (``selective_search`` or ``external``).
        cache: the selective-search cache (``None`` for a file).
        runs: precomputation results per split (``train``, ``test``).
        info: what the record says about the source.
        test_seconds: selective-search seconds of each test image, in order.
        time_source: ``live`` or ``cache`` (see the module docstring).
        live_mismatches: test images whose live search differed from the cache entry.
    """

    name: str
    cache: ProposalCache | None = None
    runs: dict[str, PrecomputeResult] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
    test_seconds: list[float] | None = None
    time_source: str = "cache"
    live_mismatches: int = 0

    def time_test_images(self, test_set: DetectionDataset, *, progress: Any = None) -> None:
        """Fill ``test_seconds``: live (search each test image again, timed) or from the cache entries.

        Called by the process that tests (rank 0 under torchrun), after training.
        """
        if self.cache is None:
            return  # a file: compute time unknown
        test = self.runs["test"]
        if self.time_source == "live":
            self.test_seconds, self.live_mismatches = time_live(test_set, self.cache, test.images, progress=progress)
        else:
            self.test_seconds = list(test.seconds)

    def fold_test_time(self, timer: StageTimer) -> None:
        """Add each timed test image's selective-search seconds to its ``proposals`` stage."""
        if self.test_seconds is not None:
            n = len(timer.samples["total"])
            timer.add_to_items("proposals", self.test_seconds[:n])

    def timing(self) -> dict[str, Any]:
        """``timing.proposal_time`` of the record: where the proposal seconds come from."""
        if self.test_seconds is None:
            return {"source": "external file: compute time unknown, not included", "s_per_img": None}
        test = self.runs["test"]
        out = {
            "source": TIME_SOURCES[self.time_source],
            "s_per_img": summarize(self.test_seconds),
            "cache_entry_s_per_img": summarize(test.seconds),
            "test_cache_hits": test.hits,
            "test_computed_this_run": test.computed,
        }
        if self.time_source == "live":
            out["live_differs_from_cache"] = self.live_mismatches
        return out

    def record_into(self, record: dict[str, Any]) -> None:
        """Proposal description, timing source and the proposal cache's disk use."""
        runs = {k: v.as_dict() for k, v in self.runs.items()}
        record["proposals"] = {**self.info, "precompute": {**runs, "pass": pass_summary(list(self.runs.values()))}}
        record["timing"]["proposal_time"] = self.timing()
        if self.cache is not None:
            size, entries = self.cache.usage()
            # Fast R-CNN writes no feature cache: disk.bytes stays 0 (Fast R-CNN 1.2: no disk for feature caching)
            record["disk"]["items"]["proposal_cache"] = size
            record["disk"]["proposal_cache"] = {
                "bytes": size,
                "entries": entries,
                "dir": str(self.cache.dir),
                "note": "selective-search proposal cache, shared with R-CNN; not a feature cache "
                "(not counted in disk.bytes)",
            }


def attach_proposals(
    cfg: RunConfig, train_set: DetectionDataset, test_set: DetectionDataset, *, progress: Any = None
) -> ProposalStage | NetworkProposals:
    """Give both splits their proposals (Fast R-CNN, R-CNN); a no-op stage for a detector with its own (RPN).

    Selective search: the cache is filled first, in ``proposals.workers`` processes
    with a progress bar (only missing entries are computed), then each sample reads
    its entry. A file: every image must have an entry, checked here.
    """
    if PROPOSAL_SOURCE[cfg.detector] == "network":
        return NetworkProposals()
    p = cfg.proposals
    if p.source == "file":
        boxes = load_proposal_file(p.file)  # type: ignore[arg-type]
        for ds in (train_set, test_set):
            ds.proposal_provider = FileProposals(boxes, ds, Path(p.file), p.max_proposals)  # type: ignore[arg-type]
        return ProposalStage("external", info={"source": "file", "file": p.file, "max_proposals": p.max_proposals})
    params = selective_search_params(p)
    cache = ProposalCache(p.cache_dir, params)
    test_limit = cfg.test.max_images
    ranks = distributed.current()
    workers = default_workers() if p.workers is None else p.workers
    sharded = None
    if ranks.active:  # torchrun: each rank computes its share of the missing entries, then all read them all
        workers = min(workers, max(1, workers // ranks.world_size))  # the ranks share the cores (0 stays 0)
        sharded = precompute([train_set, test_set], cache, workers=workers,
                             progress=progress, limits=[None, test_limit], shard=(ranks.rank, ranks.world_size))
        distributed.barrier()
        if not ranks.is_main:  # a worker rank only trains: its samples read their entries as they go
            for ds in (train_set, test_set):
                ds.proposal_provider = SelectiveSearchProvider(cache)
            return ProposalStage("selective_search", cache, time_source=p.test_timing)
    # every entry now exists (computed here or by the ranks): this pass reads them for the record
    train_run, test_run = precompute([train_set, test_set], cache, workers=workers, progress=progress,
                                     limits=[None, test_limit])
    for ds in (train_set, test_set):
        ds.proposal_provider = SelectiveSearchProvider(cache)
    stage = ProposalStage("selective_search", cache, {"train": train_run, "test": test_run}, time_source=p.test_timing)
    stage.info = {
        "source": "selective_search",
        "params": params.fingerprint(),
        "scaled_for_cpu": p.image_min_size is not None,
        "note": f"selective search on the image resized to shorter side {p.image_min_size} "
        f"(longer side <= {p.image_max_size}), boxes mapped back; the papers search the full image"
        if p.image_min_size is not None
        else "selective search on the image as on disk (the papers' setting)",
    }
    if sharded is not None:
        stage.info["distributed_precompute"] = {
            "world_size": ranks.world_size,
            "rank0_pass": {"train": sharded[0].as_dict(), "test": sharded[1].as_dict()},
            "note": "each rank computed the missing entries of its shard (every world_size-th image); "
                    "precompute.train / .test then re-read the whole cache, so their 'computed' is 0",
        }
    return stage


def time_live(
    dataset: DetectionDataset, cache: ProposalCache, n: int, *, progress: Any = None
) -> tuple[list[float], int]:
    """Selective-search seconds of the first ``n`` images, timed here (one thread), and how many
    results differed from their cache entry (0 expected: the search is deterministic)."""
    seconds, mismatches = [], 0
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    bar = progress("ss timing", n) if progress else None
    try:
        for i in range(n):
            image = dataset.load_image(i)
            start = time.perf_counter()
            boxes = selective_search(image, cache.params)[: cache.keep]
            seconds.append(time.perf_counter() - start)
            entry = cache.load(image_digest(image))
            mismatches += int(entry is None or not torch.equal(entry.boxes, boxes))
            if bar:
                bar.advance(1)
    finally:
        cv2.setNumThreads(threads)
        if bar:
            bar.close()
    return seconds, mismatches
