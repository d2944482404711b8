"""``harness bench``: our Faster R-CNN against torchvision's, side by side, in one process.

Both models are built on the same backbone architecture (same init seed) with
matching settings (image size, anchors, proposal counts, RoI Align 7x7, sampling,
batch), fed the same images, and timed interleaved (ours, theirs, ours, ...) so
machine noise hits both alike; only ratios measured in one run are reported.

Parity settings for *our* model (recorded in the bench record): anchors crossing
the border kept and background RoIs in [0, 0.5), as torchvision does. Ours is
timed twice: with its default RoI max pooling (Fast R-CNN's RoIPool, same 7x7
grid) and with RoI Align, torchvision's pooler, so the ratio with every setting
equal is in the record too.
"""
from __future__ import annotations

import copy
import statistics
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.models.detection import FasterRCNN
from torchvision.models.detection.anchor_utils import (
    AnchorGenerator as TVAnchorGenerator,
)
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor
from torchvision.ops import MultiScaleRoIAlign

from detectors.backbones import build_backbone
from detectors.svd import compress_fc_layers, default_ranks, fc_layers
from harness.config import RunConfig, apply_overrides, to_dict
from harness.data import collate, training_target
from harness.evaluation.detection import evaluate_detections
from harness.evaluation.flops import count_stage_flops
from harness.evaluation.timing import timed
from harness.run.builder import build_model
from harness.run.seeding import seed_everything
from harness.train.engine import predict, targets_to_device, train

PARITY = {"model.rpn_ignore_cross_boundary": False, "model.roi_bg_iou_low": 0.0}


class _Body(nn.Module):
    """torchvision wants ``backbone.out_channels`` on the module it calls."""

    def __init__(self, body: nn.Module, out_channels: int) -> None:
        super().__init__()
        self.body, self.out_channels = body, out_channels

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x)


class TorchvisionAdapter(nn.Module):
    """torchvision's FasterRCNN behind our ``model(images, targets, timer=...)`` call."""

    def __init__(self, model: FasterRCNN) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: list[Tensor], targets: list[dict] | None = None, *, timer: Callable = None) -> Any:
        if targets is not None:
            targets = [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets]
        return self.model(images, targets)


def torchvision_twin(cfg: RunConfig, num_classes: int, image_size: tuple[int, int]) -> TorchvisionAdapter:
    """``torchvision.models.detection.FasterRCNN`` with our backbone and our settings."""
    m = cfg.model
    parts = build_backbone(m.backbone, weights=m.weights, freeze_stages=m.freeze_stages,
                           weights_partial=m.weights_partial)
    pooled = m.pooled_size or parts.pooled_size
    model = FasterRCNN(
        _Body(parts.body, parts.out_channels),
        num_classes=None,  # the predictor below fixes K + 1
        # images arrive resized by our data layer: torchvision's own resize keeps them as they are
        min_size=min(image_size),
        max_size=max(image_size),
        image_mean=list(parts.mean),
        image_std=list(parts.std),
        rpn_anchor_generator=TVAnchorGenerator((tuple(m.anchor_sizes),), (tuple(m.anchor_ratios),)),
        rpn_pre_nms_top_n_train=m.rpn_pre_nms_top_n_train,
        rpn_pre_nms_top_n_test=m.rpn_pre_nms_top_n_test,
        rpn_post_nms_top_n_train=m.rpn_post_nms_top_n_train,
        rpn_post_nms_top_n_test=m.rpn_post_nms_top_n_test,
        rpn_nms_thresh=m.rpn_nms_thresh,
        rpn_fg_iou_thresh=m.rpn_fg_iou,
        rpn_bg_iou_thresh=m.rpn_bg_iou,
        rpn_batch_size_per_image=m.rpn_batch_size,
        rpn_positive_fraction=m.rpn_positive_fraction,
        box_roi_pool=MultiScaleRoIAlign(["0"], pooled, 2),
        box_head=parts.box_head,
        box_predictor=FastRCNNPredictor(parts.representation_size, num_classes + 1),
        box_score_thresh=m.score_thresh,
        box_nms_thresh=m.nms_thresh,
        box_detections_per_img=m.max_detections,
        box_fg_iou_thresh=m.roi_fg_iou,
        box_bg_iou_thresh=m.roi_bg_iou_high,
        box_batch_size_per_image=m.roi_batch_size,
        box_positive_fraction=m.roi_positive_fraction,
    )
    return TorchvisionAdapter(model)


def _train_step(model: nn.Module, opt: torch.optim.Optimizer, images: list[Tensor], targets: list[dict]) -> None:
    losses = model(images, targets)
    opt.zero_grad(set_to_none=True)
    sum(losses.values()).backward()
    opt.step()


def interleaved_speed(
    models: dict[str, nn.Module], test_set, train_set, cfg: RunConfig, *, device: torch.device,
    images: int, iters: int, warmup: int = 3, infer_only: dict[str, nn.Module] | None = None,
) -> dict[str, dict[str, float]]:
    """Median inference s/img and training s/iter of each model, measured interleaved.

    ``infer_only`` models (a test-time variant such as the SVD-compressed head) join
    the inference rounds only.
    """
    infer_only = infer_only or {}
    names = list(models)
    timed_infer = {**models, **infer_only}
    infer: dict[str, list[float]] = {n: [] for n in timed_infer}
    backbone: list[float] = []
    body = models["ours"].body
    n = min(images, len(test_set))
    with torch.no_grad():
        for model in timed_infer.values():
            model.to(device).eval()
        for i in range(n + warmup):
            image = test_set[i % n][0].to(device)
            order = list(timed_infer) if i % 2 == 0 else list(timed_infer)[::-1]  # alternate who goes first
            for name in order:
                seconds = timed(lambda: timed_infer[name]([image]), device)
                if i >= warmup:
                    infer[name].append(seconds)
            batch = models["ours"].batch_images([image])
            seconds = timed(lambda: body(batch.tensors), device)
            if i >= warmup:
                backbone.append(seconds)
    step: dict[str, list[float]] = {n: [] for n in names}
    opts = {n: torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=1e-3, momentum=0.9)
            for n, m in models.items()}
    per = cfg.train.images_per_batch
    for it in range(iters + warmup):
        batch = collate([train_set[(it * per + j) % len(train_set)] for j in range(per)])
        ims = [im.to(device) for im in batch[0]]
        tgts = targets_to_device([training_target(t) for t in batch[1]], device)
        for name in (names if it % 2 == 0 else names[::-1]):
            models[name].train()
            seconds = timed(lambda: _train_step(models[name], opts[name], ims, tgts), device)
            if it >= warmup:
                step[name].append(seconds)
    out = {n: {"infer_s_per_img": statistics.median(infer[n]), "train_s_per_iter": statistics.median(step[n])}
           for n in names}
    out.update({n: {"infer_s_per_img": statistics.median(infer[n])} for n in infer_only})
    out["backbone_only"] = {"infer_s_per_img": statistics.median(backbone)}
    return out


def fresh_models(cfg: RunConfig, num_classes: int, size: tuple[int, int]) -> dict[str, nn.Module]:
    """Ours (RoI max pooling), ours with RoI Align, torchvision's: each from the same seed."""
    builders = {
        "ours": lambda: build_model(cfg, num_classes),
        "ours_roi_align": lambda: build_model(apply_overrides(cfg, {"model.pooler": "roi_align"}), num_classes),
        "torchvision": lambda: torchvision_twin(cfg, num_classes, size),
    }
    models = {}
    for name, make in builders.items():
        seed_everything(cfg.seed)
        models[name] = make()
    return models


def _ratios(speed: dict[str, dict[str, float]]) -> dict[str, float]:
    tv = speed["torchvision"]
    out = {}
    for name in ("ours", "ours_roi_align"):
        suffix = "" if name == "ours" else "_roi_align"
        out[f"inference_throughput_ours{suffix}_over_torchvision"] = tv["infer_s_per_img"] / speed[name]["infer_s_per_img"]
        out[f"training_throughput_ours{suffix}_over_torchvision"] = tv["train_s_per_iter"] / speed[name]["train_s_per_iter"]
    backbone = speed["backbone_only"]["infer_s_per_img"]
    out["eval_time_over_backbone_time"] = speed["ours"]["infer_s_per_img"] / backbone
    if "ours_svd" in speed:
        out["eval_time_over_backbone_time_svd"] = speed["ours_svd"]["infer_s_per_img"] / backbone
    return out


def svd_variant(model: nn.Module) -> nn.Module | None:
    """A copy of ``model`` with its FC head truncated by SVD at the paper's ranks (Fast R-CNN 3.1).

    ``None`` for a head without FC layers (C4 ResNets).
    """
    head = model.roi_head.box_head
    if not fc_layers(head):
        return None
    compressed = copy.deepcopy(model)
    compress_fc_layers(compressed.roi_head.box_head, default_ranks(head))
    return compressed


def run_bench(
    cfg: RunConfig, *, device: torch.device, images: int = 40, iters: int = 30, accuracy_epochs: int = 0,
    accuracy_seeds: int = 1, progress: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Build both models, time them interleaved, optionally train both and compare mAP.

    ``accuracy_seeds``: the accuracy comparison is repeated for seeds ``cfg.seed ..
    cfg.seed + n - 1`` (init and data order); the record keeps each seed's figures and
    the mean and spread of the difference, since one seed's difference is mostly noise.
    """
    from harness.run.runner import build_datasets

    cfg = apply_overrides(cfg, PARITY)
    train_set, test_set = build_datasets(cfg)
    k = train_set.num_classes
    size = tuple(int(s) for s in test_set[0][0].shape[-2:])
    models = fresh_models(cfg, k, size)
    ours = models["ours"]
    ours_svd = svd_variant(ours)  # test-time only: Fast R-CNN's truncated SVD of fc6 / fc7
    progress("timing inference and training, interleaved")
    speed = interleaved_speed(models, test_set, train_set, cfg, device=device, images=images, iters=iters,
                              infer_only={"ours_svd": ours_svd} if ours_svd is not None else None)
    record: dict[str, Any] = {
        "kind": "faster_vs_torchvision",
        "config": to_dict(cfg),
        "parity_overrides": PARITY,
        "image_size": list(size),
        "speed": speed,
        "ratios": _ratios(speed),
        "targets": {"inference_throughput_ours_over_torchvision": ">= 1.2",
                    "training_throughput_ours_over_torchvision": ">= 1.1",
                    "eval_time_over_backbone_time": "<= 1.25"},
        "flops_per_image": count_stage_flops(ours.to(device), test_set[0][0].to(device)),
    }
    if ours_svd is not None:
        record["svd_ranks"] = list(default_ranks(ours.roi_head.box_head))
        record["flops_per_image_svd"] = count_stage_flops(ours_svd.to(device), test_set[0][0].to(device))
    if accuracy_epochs > 0:
        runs = []
        for seed in range(cfg.seed, cfg.seed + accuracy_seeds):
            seeded = apply_overrides(cfg, {"seed": seed})
            fresh = fresh_models(seeded, k, size)  # the timing steps above changed the weights
            runs.append(_same_schedule_accuracy(seeded, fresh["ours"], fresh["torchvision"], train_set, test_set,
                                                device, accuracy_epochs, progress))
        record["accuracy"] = _summarise_seeds(runs)
    return record


def _summarise_seeds(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean figures over seeds (the first seed's layout), plus each seed's and the difference's spread."""
    if len(runs) == 1:
        return runs[0]
    diffs = [r["map50_area_difference_points"] for r in runs]
    out: dict[str, Any] = {"epochs": runs[0]["epochs"], "seeds": [r["seed"] for r in runs], "per_seed": runs}
    for name in ("ours", "torchvision"):
        out[name] = {key: statistics.fmean(r[name][key] for r in runs) for key in runs[0][name]}
    out["map50_area_difference_points"] = statistics.fmean(diffs)
    out["map50_area_difference_points_std"] = statistics.stdev(diffs)
    return out


def _same_schedule_accuracy(cfg, ours, theirs, train_set, test_set, device, epochs, progress) -> dict[str, Any]:
    """Train both from the same init with the same schedule and data order; VOC mAP50 of each."""
    from dataclasses import replace

    tcfg = replace(cfg.train, epochs=epochs, checkpoint=False)
    out: dict[str, Any] = {"epochs": epochs, "seed": cfg.seed}
    gt = [test_set.annotation(i) for i in range(len(test_set))]
    for name, model in (("ours", ours), ("torchvision", theirs)):
        progress(f"training {name} for {epochs} epochs (seed {cfg.seed})")
        trained = train(model, train_set, tcfg, device=device, seed=cfg.seed)
        preds, _ = predict(model, test_set, cfg.test, device=device)
        metrics = evaluate_detections(preds, gt, test_set.class_names)
        out[name] = {"map50_voc07": metrics["map50_voc07"], "map50_area": metrics["map50_area"],
                     "train_s": trained.seconds}
    out["map50_area_difference_points"] = 100 * (out["ours"]["map50_area"] - out["torchvision"]["map50_area"])
    return out
