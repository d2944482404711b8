"""One run, end to end: data → model → train → test → evaluate → one run record.

Whatever happens (success, a failure, Ctrl-C or SIGTERM), the run appends exactly
one record with its status, so nothing is silently lost.
"""
from __future__ import annotations

import logging
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from harness import data as data_layer
from harness.builder import build_model
from harness.config import ConfigError, RunConfig, to_dict
from harness.engine import NonFiniteLossError, Progress, predict, proposal_recall_curve, train
from harness.evaluation import evaluate_detections, write_coco_results
from harness.results import (
    RECORDS_FILE,
    SCHEMA_VERSION,
    append_record,
    device_info,
    git_sha,
    library_versions,
    new_run_id,
    now_iso,
    peak_rss_bytes,
)

log = logging.getLogger(__name__)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda was asked for, but torch sees no CUDA device")
    return torch.device(name)


def build_datasets(cfg: RunConfig) -> tuple[data_layer.DetectionDataset, data_layer.DetectionDataset]:
    """Train (with flips) and test datasets of the configured source."""
    d = cfg.data
    default_train, default_test = data_layer.default_splits(d.dataset)
    common = {"min_size": d.min_size, "max_size": d.max_size, "seed": cfg.seed, "synthetic": d.synthetic}
    train_set = data_layer.build_dataset(d.dataset, d.train_split or default_train, flip_prob=d.flip_prob, **common)
    test_set = data_layer.build_dataset(d.dataset, d.test_split or default_test, flip_prob=0.0, **common)
    if train_set.class_names != test_set.class_names:
        raise data_layer.DatasetError("train and test splits disagree on the class list")
    return train_set, test_set


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM ends a run like Ctrl-C does: recorded as ``interrupted``."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def execute(cfg: RunConfig, *, results_dir: Path, progress: Progress | None = None) -> dict[str, Any]:
    """Run ``cfg`` and append its record to ``results_dir/runs.jsonl``; returns the record.

    Raises the original error after recording a failed or interrupted run.
    """
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device)
    run_id = new_run_id(cfg.detector)
    run_dir = results_dir / run_id
    record: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id,
        "status": "running",
        "reason": None,
        "detector": cfg.detector,
        "dataset": cfg.data.dataset,
        "backbone": cfg.model.backbone,
        "seed": cfg.seed,
        "init": f"weights:{cfg.model.weights}" if cfg.model.weights else "random",
        "profile": cfg.profile,
        "config": to_dict(cfg),
        "git_sha": git_sha(),
        "versions": library_versions(),
        "device": device_info(device),
        "metrics": {},
        "timing": {},
        "memory": {},
        "disk": {"bytes": 0, "items": {}},
        "started": now_iso(),
        "finished": None,
    }
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    try:
        with sigterm_as_interrupt():
            _train_and_test(cfg, record, run_dir, device, progress)
        record["status"] = "ok"
    except KeyboardInterrupt as err:
        record["status"], record["reason"] = "interrupted", f"interrupted ({err or 'Ctrl-C'})"
        raise
    except NonFiniteLossError as err:
        record["status"], record["reason"] = "failed", str(err)
        raise
    except Exception as err:
        record["status"], record["reason"] = "failed", f"{type(err).__name__}: {err}"
        raise
    finally:
        record["finished"] = now_iso()
        record["memory"] = {
            "peak_rss_bytes": peak_rss_bytes(),
            "cuda_max_allocated_bytes": torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None,
        }
        append_record(results_dir / RECORDS_FILE, record)
    return record


def _train_and_test(
    cfg: RunConfig, record: dict[str, Any], run_dir: Path, device: torch.device, progress: Progress | None
) -> None:
    train_set, test_set = build_datasets(cfg)
    record["dataset_info"] = {
        "train": {"name": train_set.name, "images": len(train_set)},
        "test": {"name": test_set.name, "images": len(test_set)},
        "classes": list(train_set.class_names[1:]),
    }
    model = build_model(cfg, train_set.num_classes)
    checkpoint = run_dir / "checkpoint.pt" if cfg.train.checkpoint else None
    trained = train(
        model,
        train_set,
        cfg.train,
        device=device,
        seed=cfg.seed,
        workers=cfg.data.workers,
        checkpoint_path=checkpoint,
        progress=progress,
    )
    record["timing"] = {"train_s": trained.seconds, "train_iters": trained.iterations, "epochs": trained.epochs_done}
    record["final_losses"] = trained.last_losses
    if trained.checkpoint is not None:
        record["checkpoint"] = str(trained.checkpoint)
        record["disk"]["checkpoint_bytes"] = trained.checkpoint.stat().st_size

    predictions, timer = predict(model, test_set, cfg.test, device=device, progress=progress)
    ground_truth = [test_set.annotation(i) for i in range(len(predictions))]
    metrics = evaluate_detections(
        predictions, ground_truth, test_set.class_names, label_to_category=test_set.label_to_category
    )
    write_coco_results(run_dir / "detections.json", predictions, ground_truth, test_set.label_to_category)
    metrics["proposal_recall"] = {
        "rpn" if cfg.detector == "faster" else "selective_search": proposal_recall_curve(
            model, test_set, cfg.test.recall_counts, device=device, max_images=cfg.test.max_images
        )
    }
    record["metrics"] = metrics
    record["timing"].update(
        {
            "test_images": len(predictions),
            "test_s_per_img": timer.summary(),
            "stages": timer.medians(),
            "fps": 1.0 / timer.summary()["median"] if timer.summary()["median"] else None,
        }
    )
