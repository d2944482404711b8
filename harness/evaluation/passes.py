"""Extra test passes after a run's main test pass, as a list.

Each pass says when it is wanted (from the config alone), checks at config time
that the run can do it (a clear :class:`ConfigError` before any training, never
a failure after hours of it), and writes its own part of the record. The runner
loops over :data:`TEST_PASSES` and names no detector.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from harness.config import ConfigError, RunConfig
from harness.data.base import DetectionDataset
from harness.evaluation.detection import evaluate_detections
from harness.evaluation.rpn_swap import rpn_swap_pass
from harness.evaluation.svd import svd_test_pass
from harness.evaluation.timing import StageTimer
from harness.train.engine import predict
from harness.train.fast_svm import fit_fast_svms


@dataclass
class TestedRun:
    """The main test pass, which the extra passes compare against."""

    cfg: RunConfig
    model: torch.nn.Module
    test_set: DetectionDataset
    device: torch.device
    ground_truth: list[dict]
    metrics: dict[str, Any]
    timer: StageTimer
    fold: Callable[[StageTimer], None]  # adds time spent outside the network (selective search) to a pass
    unshared: torch.nn.Module | None = None
    progress: Any = None
    train_set: DetectionDataset | None = None  # for passes that fit something more (Fast R-CNN's SVMs)
    build: Callable[[RunConfig], torch.nn.Module] | None = None  # a model of another config (the RPN swap)


@dataclass(frozen=True)
class TestPass:
    """``wanted(cfg)``: does the config ask for it; ``check(cfg)``: raise if it cannot run; ``run``: do it."""

    name: str
    wanted: Callable[[RunConfig], bool]
    check: Callable[[RunConfig], None]
    run: Callable[[TestedRun, dict[str, Any]], None]


def _svd_check(cfg: RunConfig) -> None:
    if cfg.detector == "rcnn":
        raise ConfigError("test.svd truncates the FC layers of the shared RoI head (Fast R-CNN 3.1); R-CNN runs "
                          "its CNN on each warped region and has no RoI head: drop --set test.svd=true")


def _svd_run(run: TestedRun, record: dict[str, Any]) -> None:  # Fast R-CNN 3.1: FC layers truncated, tested again
    parts = svd_test_pass(run.model, run.test_set, run.cfg.test, device=run.device, base_metrics=run.metrics,
                          base_timer=run.timer, fold=run.fold, progress=run.progress)
    record["svd"] = parts["svd"]
    record["metrics_svd"] = parts.get("metrics_svd")
    record["timing"]["svd"] = parts.get("timing_svd")


def _unshared_run(run: TestedRun, record: dict[str, Any]) -> None:
    """Faster R-CNN Table 3: the step-2 system (RPN and detector on separate backbones), same test images."""
    if run.unshared is None:
        return
    predictions, _ = predict(run.unshared, run.test_set, run.cfg.test, device=run.device)
    record["metrics_unshared"] = evaluate_detections(
        predictions, run.ground_truth, run.test_set.class_names, label_to_category=run.test_set.label_to_category
    )


def _svm_check(cfg: RunConfig) -> None:
    if cfg.detector != "fast":
        raise ConfigError("test.svm trains SVMs on Fast R-CNN's own fc7 RoI features (Fast R-CNN Table 8): use "
                          "--detector fast (R-CNN's SVMs are rcnn.classifier=svm, its default)")


def _svm_run(run: TestedRun, record: dict[str, Any]) -> None:
    """Fast R-CNN Table 8: R-CNN's SVM trainer on this run's fc7 features, the same test images scored by them."""
    if run.train_set is None:
        raise ValueError("the svm test pass needs the training set")
    record["fast_svm"] = fit_fast_svms(run.model, run.train_set, run.cfg, device=run.device, progress=run.progress)
    try:
        predictions, timer = predict(run.model, run.test_set, run.cfg.test, device=run.device)
    finally:
        run.model.set_svms(None)  # later passes (SVD) test the softmax network
    run.fold(timer)
    record["metrics_svm"] = evaluate_detections(
        predictions, run.ground_truth, run.test_set.class_names, label_to_category=run.test_set.label_to_category
    )
    record["timing"]["svm"] = {"test_s_per_img": timer.summary(), "stages": timer.medians()}


def _rpn_swap_check(cfg: RunConfig) -> None:
    if cfg.detector != "fast":
        raise ConfigError("test.rpn_proposals tests a selective-search-trained Fast R-CNN on a separately trained "
                          "RPN's proposals (Faster R-CNN Table 2): use --detector fast")


def _rpn_swap_run(run: TestedRun, record: dict[str, Any]) -> None:
    if run.train_set is None or run.build is None:
        raise ValueError("the rpn_proposals test pass needs the training set and a model builder")
    record["rpn_proposals"] = rpn_swap_pass(run.model, run.cfg, run.train_set, run.test_set, run.ground_truth,
                                            run.build, device=run.device, progress=run.progress)


def _always_possible(cfg: RunConfig) -> None:
    return None


TEST_PASSES: tuple[TestPass, ...] = (
    TestPass("unshared", lambda cfg: cfg.train.scheme == "alternating", _always_possible, _unshared_run),
    TestPass("svd", lambda cfg: cfg.test.svd, _svd_check, _svd_run),
    TestPass("svm", lambda cfg: cfg.test.svm, _svm_check, _svm_run),
    TestPass("rpn_proposals", lambda cfg: cfg.test.rpn_proposals, _rpn_swap_check, _rpn_swap_run),
)


def wanted_passes(cfg: RunConfig) -> list[TestPass]:
    """The passes ``cfg`` asks for, each checked (raises :class:`ConfigError` if one cannot run)."""
    passes = [p for p in TEST_PASSES if p.wanted(cfg)]
    for p in passes:
        p.check(cfg)
    return passes
