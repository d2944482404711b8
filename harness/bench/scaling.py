"""``harness bench-scaling``: how each detector's cost grows, as curves for the report.

Three curves, one bench record (``kind: scaling``) in ``bench.jsonl``:

- ``test_time_vs_proposals``: Fast R-CNN's and R-CNN's network time per test image
  (every stage after the proposals exist) and FLOPs per image against the number
  of proposals per image; ``rcnn_over_fast`` sets the measured R-CNN / Fast R-CNN
  time ratio beside their FLOP ratio at each count. Proposals are random boxes (sides 10-100 % of the image): the cost of
  RoI pooling and of R-CNN's warp depends on their number, not on where they are.
  Selective search itself costs the same for every count and is left out (its
  s/img is in every Fast R-CNN / R-CNN run record, ``timing.proposal_time``).
- ``faster_time_vs_image_size``: Faster R-CNN's test time per image (all stages,
  proposals included) against the image's shorter side.
- ``rcnn_disk_vs_images``: R-CNN's feature-cache bytes and the run's peak RSS
  against the number of training images; each size is a whole ``harness run
  --detector rcnn`` in its own process (peak RSS is per process), so the RSS
  column shows whether memory grows with the dataset (it should not: features
  stream to disk one image at a time).

Timings use random-init networks (speed does not depend on the weights; R-CNN
gets random SVM weights so its classifier stage runs): the record says so.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from detectors.rcnn import RCNN
from harness import data as data_layer
from harness.bench.rcnn import random_boxes
from harness.config import RunConfig, build_config, parse_set_options, to_dict
from harness.evaluation.flops import count_stage_flops
from harness.evaluation.timing import StageTimer
from harness.run.builder import build_model
from harness.run.results import RECORDS_FILE

PROPOSAL_COUNTS = (100, 300, 1000, 2000)
IMAGE_SIZES = (128, 192, 256, 384, 512, 600)
RCNN_IMAGES = (20, 40, 80)


def _test_images(cfg: RunConfig, n: int, *, min_size: int | None = None, max_size: int | None = None) -> list:
    d = cfg.data
    split = d.test_split or data_layer.default_splits(d.dataset, **data_layer.dataset_options(d))[1]
    ds = data_layer.build_dataset(d.dataset, split, min_size=min_size or d.min_size, max_size=max_size or d.max_size,
                                  synthetic=d.synthetic, **data_layer.dataset_options(d))
    return [ds[i][0] for i in range(min(n, len(ds)))], ds.num_classes


@torch.no_grad()
def _time_images(model: torch.nn.Module, images: list, inputs: Callable[[int], list[dict] | None],
                 device: torch.device, repeats: int) -> dict[str, Any]:
    """Median s/img (total and per stage) of ``model`` over ``images``, each run ``repeats`` times, after a warm-up."""
    model.to(device).eval()
    timer = StageTimer(device)
    timer.warmup = True
    with timer.item():
        model([images[0].to(device)], inputs(0), timer=timer)
    timer.warmup = False
    for _ in range(repeats):
        for i, image in enumerate(images):
            with timer.item():
                model([image.to(device)], inputs(i), timer=timer)
    return {"s_per_img": timer.summary()["median"], "stages": timer.medians(), "samples": len(timer.samples["total"])}


def time_vs_proposals(base: RunConfig, overrides: dict[str, Any], *, device: torch.device, counts: Sequence[int],
                      images: int, repeats: int, say: Callable[[str], None]) -> dict[str, list[dict[str, Any]]]:
    curves: dict[str, list[dict[str, Any]]] = {}
    for detector in ("fast", "rcnn"):
        # no cap below the largest count: every point gets exactly the boxes it names
        uncapped = {**overrides, "proposals.max_proposals": max(counts), "rcnn.max_proposals_test": None}
        cfg = build_config(detector=detector, profile=base.profile, overrides=uncapped)
        pics, k = _test_images(cfg, images)
        torch.manual_seed(cfg.seed)
        model = build_model(cfg, k)
        if isinstance(model, RCNN):  # random SVMs, so the classifier stage runs as after training
            g = torch.Generator().manual_seed(cfg.seed)
            model.set_svms(torch.randn(model.svm_weight.shape, generator=g) * 0.01, torch.zeros(model.svm_bias.shape), 1.0)
        curves[detector] = []
        for n in counts:
            say(f"{detector}: {n} proposals per image")
            boxes = [random_boxes(n, int(p.shape[1]), int(p.shape[2]), torch.Generator().manual_seed(i))
                     for i, p in enumerate(pics)]
            point = _time_images(model, pics, lambda i: [{"proposals": boxes[i].to(device)}], device, repeats)
            flops = count_stage_flops(model, pics[0].to(device), [{"proposals": boxes[0].to(device)}])
            curves[detector].append({"proposals": n, **point, "flops_per_image": flops})
    return curves


def time_vs_flop_ratios(curves: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """R-CNN / Fast R-CNN at each proposal count: measured time ratio beside the FLOP ratio.

    FLOPs count convolutions and matrix products (torch.utils.flop_counter); RoI
    pooling, warping and NMS count 0, so a time ratio below the FLOP ratio means
    the uncounted work weighs more in Fast R-CNN's time than in R-CNN's.
    """
    out = []
    for fast, rcnn in zip(curves.get("fast", []), curves.get("rcnn", [])):
        f_flops, r_flops = fast["flops_per_image"]["total"], rcnn["flops_per_image"]["total"]
        out.append({"proposals": fast["proposals"],
                    "time_ratio": rcnn["s_per_img"] / fast["s_per_img"] if fast["s_per_img"] else None,
                    "flop_ratio": r_flops / f_flops if f_flops else None})
    return out


def time_vs_image_size(base: RunConfig, overrides: dict[str, Any], *, device: torch.device, sizes: Sequence[int],
                       images: int, repeats: int, say: Callable[[str], None]) -> list[dict[str, Any]]:
    cfg = build_config(detector="faster", profile=base.profile, overrides=overrides)
    curve = []
    model = None
    for size in sizes:
        say(f"faster: shorter side {size} px")
        pics, k = _test_images(cfg, images, min_size=size, max_size=int(size * 5 / 3))
        if model is None:
            torch.manual_seed(cfg.seed)
            model = build_model(cfg, k)
        point = _time_images(model, pics, lambda i: None, device, repeats)
        curve.append({"min_size": size, "image_size": [int(s) for s in pics[0].shape[-2:]], **point})
    return curve


def rcnn_disk_vs_images(base: RunConfig, *, sizes: Sequence[int], epochs: int, device: str,
                        say: Callable[[str], None], sets: Sequence[str] = ()) -> list[dict[str, Any]]:
    """One ``harness run --detector rcnn`` per training-set size, each in a fresh process.

    ``sets``: ``key=value`` overrides passed on to every run (the command's ``--set``).
    """
    curve = []
    for n in sizes:
        say(f"rcnn: a whole run on {n} training images (own process, for its peak RSS)")
        with tempfile.TemporaryDirectory(prefix="harness-scaling-") as tmp:
            cmd = [sys.executable, "-m", "harness", "run", "--detector", "rcnn", "--epochs", str(epochs),
                   "--device", device, "--backbone", base.model.backbone, "--results", tmp,
                   "--set", f"data.synthetic.train_images={n}", "--set", "data.synthetic.test_images=4",
                   "--set", f"rcnn.cache_dir={Path(tmp) / 'features'}", "--set", f"model.init={base.model.init}",
                   *[arg for item in sets for arg in ("--set", item)]]
            if base.data.dataset != "synthetic":
                raise ValueError("the R-CNN disk curve varies data.synthetic.train_images: use the synthetic data")
            done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
            lines = (Path(tmp) / RECORDS_FILE).read_text().splitlines() if (Path(tmp) / RECORDS_FILE).exists() else []
            if done.returncode != 0 or not lines:
                raise RuntimeError(f"R-CNN run on {n} images failed: {done.stderr[-2000:]}")
            record = json.loads(lines[-1])
        curve.append({
            "train_images": n,
            "feature_cache_bytes": record["disk"]["bytes"],
            "peak_rss_bytes": record["memory"]["peak_rss_bytes"],
            "regions": record["disk"].get("feature_cache", {}).get("regions"),
            "train_stages_s": record["timing"].get("train_stages"),
            "run_id": record["run_id"],
        })
    return curve


def _shared_overrides(base: RunConfig, sets: Sequence[str]) -> dict[str, Any]:
    """What every model of the bench shares: the base config's data, backbone and init, seed and crops, then
    ``--set``."""
    return {"data.dataset": base.data.dataset, "data.min_size": base.data.min_size, "data.max_size": base.data.max_size,
            "model.backbone": base.model.backbone, "model.weights": base.model.weights, "model.init": base.model.init,
            "seed": base.seed,
            "rcnn.crop_size": base.rcnn.crop_size, **parse_set_options(list(sets))}


def run_scaling_bench(base: RunConfig, *, device: torch.device, counts: Sequence[int] = PROPOSAL_COUNTS,
                      sizes: Sequence[int] = IMAGE_SIZES, rcnn_images: Sequence[int] = RCNN_IMAGES,
                      rcnn_epochs: int = 1, images: int = 3, repeats: int = 2,
                      say: Callable[[str], None] = print, sets: Sequence[str] = ()) -> dict[str, Any]:
    """The scaling record (without device / version fields: the command adds them)."""
    record: dict[str, Any] = {
        "kind": "scaling",
        "backbone": base.model.backbone,
        "init": f"weights:{base.model.weights}" if base.model.weights else "random",
        "dataset": base.data.dataset,
        "images_per_point": images,
        "repeats": repeats,
        "notes": {
            "test_time_vs_proposals": "network time per image after the proposals exist (random boxes); "
                                      "selective search excluded (same for every count)",
            "faster_time_vs_image_size": "whole test time per image, RPN included",
            "rcnn_disk_vs_images": f"one whole `harness run --detector rcnn` per size ({rcnn_epochs} fine-tuning "
                                   "epoch(s)), each in its own process: peak RSS is that run's",
        },
        "config": to_dict(base),
    }
    overrides = _shared_overrides(base, sets)
    record["overrides"] = overrides  # what the detectors of the curves were built with
    if counts:
        record["test_time_vs_proposals"] = time_vs_proposals(base, overrides, device=device, counts=counts,
                                                             images=images, repeats=repeats, say=say)
        record["rcnn_over_fast"] = time_vs_flop_ratios(record["test_time_vs_proposals"])
    if sizes:
        record["faster_time_vs_image_size"] = time_vs_image_size(base, overrides, device=device, sizes=sizes,
                                                                 images=images, repeats=repeats, say=say)
    if rcnn_images:
        record["rcnn_disk_vs_images"] = rcnn_disk_vs_images(base, sizes=rcnn_images, epochs=rcnn_epochs,
                                                            device=device.type, say=say, sets=sets)
        rss = [p["peak_rss_bytes"] for p in record["rcnn_disk_vs_images"]]
        disk = [p["feature_cache_bytes"] for p in record["rcnn_disk_vs_images"]]
        n = list(rcnn_images)
        record["rcnn_growth"] = {
            "images_ratio": n[-1] / n[0],
            "disk_ratio": disk[-1] / disk[0] if disk[0] else None,
            "peak_rss_ratio": rss[-1] / rss[0] if rss[0] else None,
        }
    return record
