"""One run, end to end: data → model → train → test → evaluate → one run record.

Whatever happens (success, a failure, Ctrl-C or SIGTERM), the run appends exactly
one record with its status, so nothing is silently lost.
"""
from __future__ import annotations

import logging
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from harness import data as data_layer
from harness.config import RunConfig, to_dict
from harness.config.capabilities import check_capabilities
from harness.data.imageio import require_image_files
from harness.evaluation.coco import write_coco_results
from harness.evaluation.detection import evaluate_detections
from harness.evaluation.flops import count_stage_flops
from harness.evaluation.gallery import write_gallery
from harness.evaluation.passes import TestedRun, wanted_passes
from harness.proposals.stage import attach_proposals
from harness.run import distributed
from harness.run.builder import build_model
from harness.run.checkpoint import CHECKPOINT_FILE, Resume
from harness.run.device import resolve_device
from harness.run.init_record import record_weights
from harness.run.results import (
    RECORDS_FILE,
    append_record,
    new_run_id,
    now_iso,
    peak_rss_bytes,
    record_envelope,
)
from harness.run.schema import SCHEMA_VERSION, RunRecord
from harness.run.seeding import seed_everything
from harness.run.sweep_resume import run_lock
from harness.train.engine import (
    NonFiniteLossError,
    Progress,
    eval_inputs,
    predict,
    proposal_recall_curve,
)
from harness.train.pretrain import resolve_init
from harness.train.schemes import FitJob, check_distributed, fit_function
from harness.train.train_log import TRAIN_LOG_FILE, TrainLog

log = logging.getLogger(__name__)


def build_datasets(cfg: RunConfig) -> tuple[data_layer.DetectionDataset, data_layer.DetectionDataset]:
    """Train (with flips) and test datasets of the configured source."""
    d = cfg.data
    options = data_layer.dataset_options(d)
    default_train, default_test = data_layer.default_splits(d.dataset, **options)
    common = {"min_size": d.min_size, "max_size": d.max_size, "seed": cfg.seed, "synthetic": d.synthetic, **options}
    train_set = data_layer.build_dataset(d.dataset, d.train_split or default_train, flip_prob=d.flip_prob, **common)
    if len(d.scales) > 1:  # multi-scale training (Fast R-CNN 5.2): a shorter side drawn per image
        train_set.transforms = data_layer.build_transforms(d.min_size, d.max_size, d.flip_prob, cfg.seed, d.scales)
    test_set = data_layer.build_dataset(d.dataset, d.test_split or default_test, flip_prob=0.0, **common)
    if train_set.class_names != test_set.class_names:
        raise data_layer.DatasetError("train and test splits disagree on the class list")
    for role, ds in (("training", train_set), ("test", test_set)):
        if len(ds) == 0:  # fail before any training rather than after hours of it
            raise data_layer.DatasetError(f"the {role} split {ds.name} is empty (no images listed)")
        require_image_files(ds)
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


def execute(
    cfg: RunConfig,
    *,
    results_dir: Path,
    progress: Progress | None = None,
    resume: Resume | None = None,
    tags: dict[str, Any] | None = None,
    tensorboard: Path | None = None,
) -> dict[str, Any]:
    """Run ``cfg`` and append its record to ``results_dir/runs.jsonl``; returns the record.

    With ``resume`` (see :func:`harness.run.checkpoint.prepare_resume`) training continues
    from that run's checkpoint, in its folder and under its run id; the new record
    says ``resumed_from_epoch``. Raises the original error after recording a failed
    or interrupted run. ``tags`` (e.g. ``{"preset": ..., "preset_row": ...}``) are
    copied into the record as top-level fields. ``tensorboard``: also write the training log
    as TensorBoard scalars under ``tensorboard/<run_id>``.
    """
    threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        return _execute(cfg, results_dir, progress, resume, tags, tensorboard)
    finally:  # a sweep or a test runs many configs in one process: the next one starts from the process's own
        torch.set_num_threads(threads)


def _execute(cfg: RunConfig, results_dir: Path, progress: Progress | None, resume: Resume | None,
             tags: dict[str, Any] | None, tensorboard: Path | None) -> dict[str, Any]:
    started = time.time()  # before the process group: no other rank can fail earlier
    with distributed.process_group(resolve_device(cfg.device)) as (ranks, device):
        if ranks.active:
            check_distributed(cfg)
            if ranks.is_main:  # the built-in pre-training (and its body-only file) on first use, once
                resolve_init(cfg, log=log.warning)
            distributed.barrier()
        if not ranks.is_main:  # a torchrun worker: trains its shard, rank 0 records the run
            try:
                _train_and_test(cfg, {"disk": {"items": {}}}, results_dir / "unused", device, None, resume, ranks)
            except Exception as err:
                distributed.report_failure(results_dir, err)
                raise
            return {"status": "ok", "rank": ranks.rank}
        return _execute_main(cfg, device, ranks, results_dir=results_dir, progress=progress, resume=resume,
                             tags=tags, started=started, tensorboard=tensorboard)


def _execute_main(
    cfg: RunConfig,
    device: torch.device,
    ranks: distributed.DistInfo,
    *,
    results_dir: Path,
    progress: Progress | None,
    resume: Resume | None,
    tags: dict[str, Any] | None,
    started: float,
    tensorboard: Path | None = None,
) -> dict[str, Any]:
    run_id = resume.run_id if resume is not None else new_run_id(cfg.detector)
    run_dir = results_dir / run_id
    record: RunRecord = {
        "schema_version": SCHEMA_VERSION,
        "run_id": run_id,
        "status": "running",
        "reason": None,
        "detector": cfg.detector,
        "dataset": cfg.data.dataset,
        "backbone": cfg.model.backbone,
        "seed": cfg.seed,
        "init": resolve_init(cfg, log=log.warning)[1],  # pre-trains once on first use (cached)
        "profile": cfg.profile,
        "config": to_dict(cfg),
        **record_envelope(now_iso(), device),
        "finished": None,  # set when the run ends, whatever its status
        "metrics": {},
        "timing": {},
        "memory": {},
        "disk": {"bytes": 0, "items": {}},
        "resumed_from_epoch": resume.epoch if resume is not None else None,
        "distributed": ranks.as_record() if ranks.active else None,
        **(tags or {}),
    }
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    try:
        with sigterm_as_interrupt(), run_lock(run_dir):  # the lock: this folder belongs to a live process
            _train_and_test(cfg, record, run_dir, device, progress, resume, ranks, tensorboard)
        record["status"] = "ok"
    except KeyboardInterrupt as err:
        record["status"], record["reason"] = "interrupted", f"interrupted ({err or 'Ctrl-C'})"
        if (run_dir / CHECKPOINT_FILE).is_file():
            log.warning("run %s stopped; continue it from its last checkpoint with: harness run <same options> "
                        "--results %s --resume %s", run_id, results_dir, run_id)
        raise
    except NonFiniteLossError as err:
        record["status"], record["reason"] = "failed", str(err)
        raise
    except Exception as err:
        record["status"], record["reason"] = "failed", f"{type(err).__name__}: {err}"
        raise
    finally:
        if ranks.active and record["status"] != "ok":
            _blame_peers(record, distributed.peer_failures(results_dir, since=started))
        record["finished"] = now_iso()
        record["memory"] = {
            "peak_rss_bytes": peak_rss_bytes(),
            "cuda_max_allocated_bytes": torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None,
        }
        append_record(results_dir / RECORDS_FILE, record)
    return record


def _blame_peers(record: dict[str, Any], peers: list[str]) -> None:
    """Under torchrun, another rank's error is the cause of rank 0's stop (torchrun's SIGTERM or a
    broken collective): the run failed, for that reason."""
    if peers:
        record["status"] = "failed"
        record["reason"] = f"{'; '.join(peers)} (rank 0: {record['reason'] or 'stopped'})"


def check_run(cfg: RunConfig, *, resuming: bool = False) -> None:
    """Everything about ``cfg`` that can be refused before any work: keys its detector cannot honour, the
    (detector, scheme) pair, the extra test passes it asks for, and what several processes cannot train. Raises :class:`ConfigError`."""
    check_capabilities(cfg)
    fit_function(cfg, resuming=resuming)
    wanted_passes(cfg)
    if distributed.from_env().active:
        check_distributed(cfg)


def _train_and_test(
    cfg: RunConfig,
    record: dict[str, Any],
    run_dir: Path,
    device: torch.device,
    progress: Progress | None,
    resume: Resume | None = None,
    ranks: distributed.DistInfo = distributed.DistInfo(),
    tensorboard: Path | None = None,
) -> None:
    """Train and test; a torchrun rank other than 0 returns after training."""
    check_capabilities(cfg)  # sweeps and presets come here without check_run
    fit = fit_function(cfg, resuming=resume is not None)
    passes = wanted_passes(cfg)
    train_set, test_set = build_datasets(cfg)
    record["dataset_info"] = {
        "train": {"name": train_set.name, "images": len(train_set)},
        "test": {"name": test_set.name, "images": len(test_set)},
        "classes": list(train_set.class_names[1:]),
        "category_ids": [test_set.label_to_category[k] for k in range(1, len(test_set.class_names))],
    }
    if hasattr(train_set, "scene_dir"):  # a generated set: where its scenes were read from (or "off": drawn)
        record["dataset_info"]["scene_cache"] = str(train_set.scene_dir) if train_set.scene_dir else "off"
    # selective search (cached, filled in parallel) or a file for data-side proposals; a no-op for the RPN
    proposal_stage = attach_proposals(cfg, train_set, test_set, progress=progress)
    seed_everything(cfg.seed)  # random init depends on --seed alone, as the CLI promises
    # model.weights: the built-in pre-trained file where model.init asks for it (a torchrun worker that found no
    # cached file would train it here too, and say so: the barrier in execute leaves it to rank 0)
    built = resolve_init(cfg, log=logging.getLogger(__name__).warning)[0]
    model = build_model(built, train_set.num_classes)
    record_weights(record, getattr(model, "weights_report", None))
    checkpoint = run_dir / CHECKPOINT_FILE if cfg.train.checkpoint else None
    log = None
    if ranks.is_main:  # one training log per run, continued by a resume (entries after its checkpoint dropped)
        log = TrainLog(run_dir / TRAIN_LOG_FILE, cfg.train.log_every,
                       resume_step=int(resume.state["iterations"]) if resume is not None else None,
                       tensorboard=tensorboard / run_dir.name if tensorboard is not None else None)
        record["train_log"] = {"file": TRAIN_LOG_FILE, "every": cfg.train.log_every}
    try:
        fitted = fit(FitJob(cfg, model, lambda: build_model(built, train_set.num_classes), train_set, device,
                            progress, resume.state if resume is not None else None, checkpoint, log))
    finally:
        if log is not None:
            log.close()
    model, trained = fitted.model, fitted.trained
    fitted.record_into(record)
    if trained.checkpoint is None and resume is not None and checkpoint is not None and checkpoint.is_file():
        trained.checkpoint = checkpoint  # resumed after the last epoch: its checkpoint is the final one
    if trained.checkpoint is not None:
        record["checkpoint"] = str(trained.checkpoint)
        record["disk"]["checkpoint_bytes"] = trained.checkpoint.stat().st_size
    if not ranks.is_main:
        return

    proposal_stage.time_test_images(test_set, progress=progress)  # live: just before the test pass
    predictions, timer = predict(model, test_set, cfg.test, device=device, progress=progress)
    proposal_stage.fold_test_time(timer)  # selective search is part of test time per image
    ground_truth = [test_set.annotation(i) for i in range(len(predictions))]
    metrics = evaluate_detections(
        predictions, ground_truth, test_set.class_names, label_to_category=test_set.label_to_category
    )
    write_coco_results(run_dir / "detections.json", predictions, ground_truth, test_set.label_to_category)
    record["gallery"] = write_gallery(run_dir, test_set, predictions, ground_truth, count=cfg.test.gallery_images,
                                      seed=cfg.test.gallery_seed)
    metrics["proposal_recall"] = {
        proposal_stage.name: proposal_recall_curve(
            model, test_set, cfg.test.recall_counts, device=device, max_images=cfg.test.max_images,
            iou_counts=cfg.test.recall_iou_counts,
        )
    }
    record["metrics"] = metrics
    image, target = test_set[0]
    record["flops"] = count_stage_flops(model, image.to(device), eval_inputs(target, device))
    record["timing"].update(
        {
            "test_images": len(predictions),
            "test_s_per_img": timer.summary(),
            "test_s_per_img_without_proposals": timer.summary_without("proposals"),
            "stages": timer.medians(),
            "fps": 1.0 / timer.summary()["median"] if timer.summary()["median"] else None,
        }
    )
    proposal_stage.record_into(record)
    tested = TestedRun(cfg, model, test_set, device, ground_truth, metrics, timer, proposal_stage.fold_test_time,
                       unshared=fitted.unshared, progress=progress, train_set=train_set,
                       build=lambda c: build_model(c, train_set.num_classes))
    for extra in passes:
        extra.run(tested, record)
