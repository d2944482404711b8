"""A finished run's detector on a user's images: ``harness predict RUN_ID IMAGES...``.

The run's record (``runs.jsonl``) gives its config and checkpoint; the detector
is built from the config (:func:`harness.run.builder.build_model`) and gets the
checkpoint's weights (R-CNN: the whole detector with its SVMs and box
regressors, ``rcnn_model.pt``). Each image is resized as in the run's test pass;
a detector whose proposals come from the data side (Fast R-CNN, R-CNN) gets
selective-search proposals computed on the fly through the proposal cache
(:func:`harness.proposals.precompute.lookup_or_compute`), with the run's
selective-search settings. Output: one COCO-style JSON of the detections and
one annotated JPEG per image, drawn by :func:`harness.evaluation.drawing.draw_boxes`.
"""
from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.config import (
    PROPOSAL_SOURCE,
    ConfigError,
    RunConfig,
    build_config,
    config_keys,
)
from harness.data.base import image_to_tensor, make_target
from harness.data.errors import DatasetError
from harness.data.imageio import read_rgb
from harness.data.specs import build_transforms
from harness.evaluation.drawing import Box, draw_boxes, jpeg_bytes
from harness.proposals.cache import ProposalCache
from harness.proposals.precompute import lookup_or_compute
from harness.proposals.stage import selective_search_params
from harness.run.builder import build_model
from harness.run.checkpoint import CHECKPOINT_FILE, CheckpointError, load_checkpoint
from harness.run.device import resolve_device
from harness.run.results import RECORDS_FILE, read_records
from harness.run.storage import atomic_write_bytes
from harness.train.engine import eval_inputs, to_original_frame

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
DETECTIONS_FILE = "detections.json"


@dataclass
class Predicted:
    """What :func:`predict_images` did: detections (COCO style, with file names), files written, images skipped."""

    detections: list[dict[str, Any]] = field(default_factory=list)
    images: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # one message per unreadable image


def find_record(results_dir: Path, run_id: str) -> dict[str, Any]:
    """The last record of ``run_id`` in ``results_dir/runs.jsonl``; a :class:`CheckpointError` when there is none."""
    path = Path(results_dir) / RECORDS_FILE
    if not path.is_file():
        raise CheckpointError(f"no run records: {path} does not exist (pass --results DIR)")
    records = [r for r in read_records(path) if r.get("run_id") == run_id]
    if not records:
        raise CheckpointError(f"no run {run_id!r} in {path}")
    return records[-1]


def run_config(record: dict[str, Any], device: str) -> RunConfig:
    """The run's config as recorded (keys this harness no longer has are ignored), on ``device``;
    ``model.weights`` and ``model.init`` are dropped: the checkpoint holds every weight."""
    known = config_keys()
    flat: dict[str, Any] = {}

    def walk(tree: dict[str, Any], prefix: str) -> None:
        for key, value in tree.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")
            elif f"{prefix}{key}" in known:
                flat[f"{prefix}{key}"] = value

    walk(record.get("config") or {}, "")
    detector, profile = flat.pop("detector", record.get("detector")), flat.pop("profile", "cpu")
    flat.update({"model.weights": None, "model.init": "random", "device": device})
    return build_config(detector=detector, profile=profile, overrides=flat)


def model_file(record: dict[str, Any], results_dir: Path) -> Path:
    """The file with the run's final weights: a scheme's own whole-model file when it wrote one (R-CNN's SVMs
    and regressors), else the checkpoint; found in the run's folder under ``results_dir`` first."""
    run_id = str(record.get("run_id"))
    recorded = (record.get("rcnn") or {}).get("model_file") or record.get("checkpoint")
    if not recorded:
        raise CheckpointError(f"run {run_id} has no checkpoint (status {record.get('status')}; a run with "
                              "train.checkpoint=false, or a scheme that keeps none: alternating, stagewise)")
    for path in (Path(results_dir) / run_id / Path(recorded).name, Path(recorded)):
        if path.is_file():
            return path
    raise CheckpointError(f"run {run_id}'s checkpoint {recorded} does not exist")


def load_detector(record: dict[str, Any], results_dir: Path, device: str) -> tuple[torch.nn.Module, RunConfig]:
    """The run's detector with its trained weights, in eval mode on ``device``."""
    if record.get("status") != "ok":
        log.warning("run %s ended %s; predicting with its last checkpoint", record.get("run_id"), record.get("status"))
    path = model_file(record, results_dir)
    cfg = run_config(record, device)
    classes = (record.get("dataset_info") or {}).get("classes")
    if not classes:
        raise CheckpointError(f"run {record.get('run_id')}'s record lists no classes (dataset_info.classes)")
    if path.name == CHECKPOINT_FILE:
        state = load_checkpoint(path)["model"]
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)["model"]
        except Exception as err:  # noqa: BLE001 - arbitrary bytes fail in many ways
            raise CheckpointError(f"{path} is unreadable ({type(err).__name__})") from None
    model = build_model(cfg, len(classes))
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise CheckpointError(f"{path} does not fit the run's detector: {str(err).splitlines()[0]}") from None
    return model.to(resolve_device(cfg.device)).eval(), cfg


def collect_images(inputs: Sequence[Path]) -> list[tuple[Path, Path]]:
    """``(image file, its output name relative to --out)`` for files and folders (recursively, by extension)."""
    found: list[tuple[Path, Path]] = []
    for item in map(Path, inputs):
        if item.is_dir():
            files = sorted(p for p in item.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
            found += [(p, p.relative_to(item)) for p in files]
        elif item.is_file():
            found.append((item, Path(item.name)))
        else:
            raise DatasetError(f"no such image file or folder: {item}")
    if not found:
        raise DatasetError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) in {', '.join(map(str, inputs))}")
    return found


def _proposals(cfg: RunConfig) -> Callable[[np.ndarray], torch.Tensor] | None:
    """Selective search through the cache for a detector with data-side proposals; ``None`` for the RPN."""
    if PROPOSAL_SOURCE[cfg.detector] != "data":
        return None
    if cfg.proposals.source == "file":
        log.warning("the run read proposals from a file; new images get selective search with the run's settings")
    cache = ProposalCache(cfg.proposals.cache_dir, selective_search_params(cfg.proposals))
    return lambda pixels: lookup_or_compute(cache, pixels)[0].boxes


def predict_images(
    model: torch.nn.Module,
    cfg: RunConfig,
    record: dict[str, Any],
    images: Sequence[tuple[Path, Path]],
    out_dir: Path,
    *,
    score_thresh: float = 0.5,
    progress: Any = None,
) -> Predicted:
    """Detect on each image, write ``out_dir/detections.json`` and one annotated JPEG per image.

    An unreadable image is skipped (its message in ``skipped``); the rest are processed.
    """
    info = record.get("dataset_info") or {}
    names = ["__background__", *info["classes"]]
    categories = info.get("category_ids") or list(range(1, len(names)))
    device = next(model.parameters()).device
    transforms = build_transforms(cfg.data.min_size, cfg.data.max_size)
    proposals = _proposals(cfg)
    result = Predicted()
    bar = progress("predict", len(images)) if progress else None
    for index, (path, name) in enumerate(images):
        try:
            pixels = read_rgb(path, dataset="predict")
        except DatasetError as err:
            result.skipped.append(str(err))  # the command lists them after the progress bar
            if bar:
                bar.advance(1)
            continue
        target = make_target(np.zeros((0, 4)), [], image_id=index, orig_size=pixels.shape[:2])
        if proposals is not None:
            target["proposals"] = proposals(pixels)
        image, target = transforms(image_to_tensor(pixels), target)
        with torch.no_grad():
            (out,) = model([image.to(device)], eval_inputs(target, device))
        pred = to_original_frame(out, target)
        keep = pred["scores"] >= score_thresh
        boxes, labels, scores = pred["boxes"][keep].tolist(), pred["labels"][keep].tolist(), pred["scores"][keep].tolist()
        drawn = [Box(tuple(b), f"{names[k]} {s:.2f}", "det") for b, k, s in zip(boxes, labels, scores)]
        jpeg = (out_dir / name).with_suffix(".jpg")
        if str(jpeg) in result.images:  # a.png beside a.jpg: keep both
            jpeg = jpeg.with_name(f"{jpeg.stem}_{index}.jpg")
        atomic_write_bytes(jpeg, jpeg_bytes(draw_boxes(pixels, drawn), quality=90), what="annotated image")
        result.images.append(str(jpeg))
        for (x1, y1, x2, y2), k, s in zip(boxes, labels, scores):
            result.detections.append({"file_name": str(path), "image_id": index, "category_id": int(categories[k - 1]),
                                      "category_name": names[k], "bbox": [x1, y1, x2 - x1, y2 - y1], "score": s})
        if bar:
            bar.advance(1)
    if bar:
        bar.close()
    atomic_write_bytes(out_dir / DETECTIONS_FILE, json.dumps(result.detections, indent=1).encode(), what="detections")
    return result


def check_threshold(score_thresh: float) -> None:
    if not 0.0 <= score_thresh <= 1.0:
        raise ConfigError(f"--score-thresh must be within [0, 1], got {score_thresh}")
