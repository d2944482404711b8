"""The run record's schema: one definition that the runner and the benches write and the report reads.

A record is one JSON object per line of ``runs.jsonl`` (runs) or ``bench.jsonl``
(benchmarks). Every record carries the :class:`Envelope`. The keys below are
the whole vocabulary: :func:`record_problems` names any other key, and any
``config`` key that the current :class:`~harness.config.RunConfig` does not
have, so that a key renamed in one writer and not in a reader fails a test.

``schema_version`` 1 is the only version so far; records of other versions are
read as they are (the report shows missing values as ``-``).
"""
from __future__ import annotations

from typing import Any, TypedDict

from harness.config import config_keys, flatten_dict

SCHEMA_VERSION = 1
STATUSES = ("running", "ok", "failed", "interrupted")


class Envelope(TypedDict):
    """When, which code, which libraries and which device: in every record (:func:`record_envelope`)."""

    started: str  # ISO 8601, UTC
    finished: str | None
    git_sha: str | None  # "+dirty" when the checkout was modified
    versions: dict[str, str | None]  # python, torch, torchvision, opencv, numpy
    device: dict[str, Any]  # type, name, threads, cpu (and cuda)


class RunRecord(Envelope, total=False):
    """One ``harness run`` (also each run of ``sweep`` / ``reproduce``)."""

    schema_version: int
    run_id: str
    status: str  # one of STATUSES
    reason: str | None  # why a run failed or was interrupted
    detector: str
    dataset: str
    backbone: str
    seed: int
    init: str | dict[str, Any]  # "random", or the weights file loaded: file, sha256, loaded / missing counts
    profile: str
    config: dict[str, Any]  # the fully resolved RunConfig (harness.config.to_dict)
    dataset_info: dict[str, Any]  # train / test split names and sizes, class names
    metrics: dict[str, Any]  # map50_voc07, map50_area, coco_*, per_class, pr_curves, proposal_recall
    metrics_svd: dict[str, Any] | None  # the truncated-SVD test pass (Fast R-CNN 3.1)
    metrics_unshared: dict[str, Any]  # alternating training's step-2 system (Faster R-CNN Table 3)
    metrics_svm: dict[str, Any]  # Fast R-CNN scored by SVMs on its own fc7 (test.svm, Fast R-CNN Table 8)
    rpn_proposals: dict[str, Any]  # fast + test.rpn_proposals: mAP on a separate RPN's proposals per variant
    fast_svm: dict[str, Any]  # those SVMs: positives, mining, feature extraction and fit seconds
    svd: dict[str, Any]  # ranks, layers, head time and mAP without / with SVD
    timing: dict[str, Any]  # train_s, train_iters, epochs, train_stages, test_s_per_img, stages, svd, ...
    final_losses: dict[str, float]
    memory: dict[str, Any]  # peak_rss_bytes, cuda_max_allocated_bytes
    disk: dict[str, Any]  # bytes (feature caches), items, checkpoint_bytes, proposal_cache, extrapolated
    flops: dict[str, Any]  # per stage, one test image
    proposals: dict[str, Any]  # data-side proposal source and its precompute pass
    rcnn: dict[str, Any]  # R-CNN's stage details (SVMs, box regression, cache)
    checkpoint: str
    train_log: dict[str, Any]  # file (train_log.jsonl in the run folder: losses, lr, images/s), every
    gallery: dict[str, Any] | None  # file (gallery.json in the run folder), images, seed, bytes
    resumed_from_epoch: int | None
    distributed: dict[str, Any] | None  # world_size, backend (torchrun)
    preset: str  # reproduce: preset id, row label and scale
    preset_row: str
    scale: str
    preset_overrides: dict[str, Any]  # reproduce: the invocation-wide overrides (--dataset, --weights, --set)
    reductions: dict[str, str]  # reproduce at cpu scale: what the run gives up against the benchmark, key -> why


class BenchRecord(Envelope, total=False):
    """One ``harness bench*`` invocation (``bench.jsonl``); the measured figures vary by ``kind``/``bench``."""

    kind: str
    bench: str


RUN_KEYS = frozenset(RunRecord.__annotations__) | frozenset(Envelope.__annotations__)


def record_problems(record: dict[str, Any]) -> list[str]:
    """What in ``record`` the schema does not know: unknown top-level keys, unknown config keys, a bad status."""
    problems = [f"unknown record key {k!r}" for k in record if k not in RUN_KEYS]
    missing = [k for k in Envelope.__annotations__ if k not in record]
    problems += [f"missing envelope key {k!r}" for k in missing]
    if "status" in record and record["status"] not in STATUSES:
        problems.append(f"unknown status {record['status']!r}")
    known = set(config_keys())
    problems += [f"unknown config key {k!r}" for k in flatten_dict(record.get("config") or {}) if k not in known]
    return problems
