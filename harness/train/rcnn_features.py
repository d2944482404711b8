"""R-CNN's feature-extraction stage: every region of every training image through the CNN, to disk.

After fine-tuning, the chosen layer's features (fc7 by default) of the ground-
truth boxes and the top-N proposals of each training image are written to the
on-disk cache (R-CNN section 2.3, "features are cached to disk"), together with
pool5 features of the regions the box regressors train on (IoU > 0.6 with a
ground-truth box, appendix C). Images are processed one at a time, so memory
does not grow with the dataset.

The cache key holds everything the features depend on: the hash of the
fine-tuned network's weights, the layer and dtype, crop size and padding, the
proposal parameters and the dataset. A second run with the same key reuses
every valid entry (an entry is also checked against the regions it was computed
for); a torn or corrupted entry is recomputed.

Shape shorthand: n = regions of one image (G ground truth + P proposals), D = feature size.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from detectors.rcnn import RCNN
from detectors.rcnn.bbox_reg import regression_examples
from harness.config import RunConfig, to_dict
from harness.data.base import DetectionDataset, training_target
from harness.evaluation.timing import Stopwatch
from harness.train.engine import Progress
from harness.train.feature_cache import FeatureCache, state_dict_digest

VOC07_TRAINVAL = (5011, 2000)  # images x proposals the paper's cache holds


@dataclass
class FeatureCaches:
    """The two caches of one run: the classifier layer, and pool5 of the regression examples."""

    features: FeatureCache
    bbox: FeatureCache | None
    layer: str


@dataclass
class ExtractionStats:
    """What the feature stage did: entries reused / computed, regions, bytes."""

    images: int = 0
    reused: int = 0
    computed: int = 0
    regions: int = 0
    regression_examples: int = 0
    crops_per_s: float | None = None
    bytes_written: dict[str, int] = field(default_factory=dict)


def cache_key(model: RCNN, cfg: RunConfig, dataset: DetectionDataset) -> dict[str, Any]:
    """Everything the cached features depend on (its digest names the cache folder)."""
    r = cfg.rcnn
    return {
        "checkpoint_sha256": state_dict_digest(model.network),
        "backbone": cfg.model.backbone,
        "crop_size": r.crop_size,
        "context_padding": r.padding(),
        "max_proposals_train": model.train_proposal_source.top_n,
        # where the proposals come from and how many (not where or how fast they are computed)
        "proposals": {k: v for k, v in to_dict(cfg.proposals).items() if k not in ("workers", "cache_dir")},
        "dataset": getattr(dataset, "name", type(dataset).__name__),
        "images": len(dataset),
        "image_size": [cfg.data.min_size, cfg.data.max_size],
        "synthetic": to_dict(cfg.data.synthetic) if cfg.data.dataset == "synthetic" else None,
        # only for synthetic-hard, so that the keys (and cache folders) of the other datasets stay as they were
        **({"synthetic_hard": to_dict(cfg.data.synthetic_hard)} if cfg.data.dataset == "synthetic-hard" else {}),
    }


def open_caches(
    model: RCNN, cfg: RunConfig, dataset: DetectionDataset, root: str | Path | None = None
) -> FeatureCaches:
    """The run's caches under ``root`` (default ``rcnn.cache_dir``), keyed by :func:`cache_key`."""
    r = cfg.rcnn
    root = Path(root if root is not None else r.cache_dir)
    key = cache_key(model, cfg, dataset)
    dims = model.network.dims
    features = FeatureCache(root, key, name=f"{r.feature_layer}-{r.cache_dtype}", dim=dims[r.feature_layer],
                            dtype=r.cache_dtype)
    bbox = None
    if r.bbox_reg:
        bbox = FeatureCache(root, key, name=f"bbox_pool5-iou{r.bbox_reg_iou:g}-{r.cache_dtype}", dim=dims["pool5"],
                            dtype=r.cache_dtype)
    return FeatureCaches(features, bbox, r.feature_layer)


def _same_regions(meta: dict[str, Any], regions: Tensor) -> bool:
    boxes = torch.tensor(meta.get("boxes", []), dtype=torch.float32).reshape(-1, 4)
    return boxes.shape == regions.shape and torch.allclose(boxes, regions.cpu(), atol=1e-3)


@torch.no_grad()
def extract_features(
    model: RCNN,
    dataset: DetectionDataset,
    caches: FeatureCaches,
    *,
    device: torch.device,
    bbox_min_iou: float = 0.6,
    progress: Progress | None = None,
) -> ExtractionStats:
    """Fill the caches for every image of ``dataset`` (un-flipped), reusing valid entries.

    Raises:
        FeatureCacheError: not enough disk space (checked before writing anything,
            with an upper bound of the bytes, and again before each entry).
    """
    model.to(device).eval()
    layers = (model.feature_layer,) + (("pool5",) if caches.bbox is not None else ())
    n = len(dataset)
    # upper bound: every image keeps its N proposals (most do) plus its gt boxes
    bound = sum(model.train_proposal_source.top_n + len(dataset.annotation(i)["boxes"]) for i in range(n))
    caches.features.check_space(bound)
    if caches.bbox is not None:
        caches.bbox.prepare()
    stats = ExtractionStats(images=n)
    bar = progress("features", n) if progress else None
    crop_seconds, crops = 0.0, 0
    for i in range(n):
        image, target = dataset[i]
        t = training_target(target)
        batch, sizes = model.normalize([image.to(device)])
        (props,) = model.proposals(batch, sizes, [t], training=True)
        regions = model.training_regions(t, props)
        stats.regions += regions.shape[0]
        meta = caches.features.meta(i)
        bbox_meta = caches.bbox.meta(i) if caches.bbox is not None else {"classes": []}
        if meta is not None and _same_regions(meta, regions) and bbox_meta is not None:
            stats.reused += 1
            stats.regression_examples += len(bbox_meta["classes"])
        else:
            crop_seconds += _extract_one(model, i, batch, regions, t, caches, layers, bbox_min_iou, stats)
            crops += regions.shape[0]
            stats.computed += 1
        if bar:
            bar.advance(1)
    if bar:
        bar.close()
    stats.crops_per_s = crops / crop_seconds if crop_seconds > 0 else None
    stats.bytes_written = {"features": caches.features.bytes_written,
                           "bbox": caches.bbox.bytes_written if caches.bbox is not None else 0}
    return stats


def _extract_one(
    model: RCNN,
    index: int,
    batch: Tensor,
    regions: Tensor,
    target: dict,
    caches: FeatureCaches,
    layers: tuple[str, ...],
    bbox_min_iou: float,
    stats: ExtractionStats,
) -> float:
    """Features of one image's ``regions [n, 4]`` into the caches; returns the warp + CNN seconds."""
    gt_boxes, gt_labels = target["boxes"].to(regions), target["labels"].to(regions.device)
    reg_idx, reg_cls, reg_gt = regression_examples(regions, gt_boxes, gt_labels, min_iou=bbox_min_iou)
    feats = [torch.zeros(0, caches.features.dim)]
    pool5 = [torch.zeros(0, caches.bbox.dim)] if caches.bbox is not None else []
    with Stopwatch(batch.device) as watch:
        for start, end, out in model.region_features(batch, [regions], layers):
            feats.append(out[model.feature_layer].cpu())
            if caches.bbox is not None:
                chosen = reg_idx[(reg_idx >= start) & (reg_idx < end)] - start
                pool5.append(out["pool5"][chosen].cpu())
    caches.features.write(index, torch.cat(feats), {
        "boxes": regions.cpu().tolist(),
        "num_gt": int(gt_boxes.shape[0]),
        "gt_labels": gt_labels.cpu().tolist(),
    })
    if caches.bbox is not None:
        targets = model.box_coder.encode(regions[reg_idx], reg_gt) if reg_idx.numel() else torch.zeros(0, 4)
        caches.bbox.write(index, torch.cat(pool5), {
            "region_index": reg_idx.cpu().tolist(),
            "classes": reg_cls.cpu().tolist(),
            "targets": targets.cpu().tolist(),
        })
        stats.regression_examples += int(reg_idx.numel())
    return watch.seconds


def disk_record(caches: FeatureCaches, stats: ExtractionStats, num_images: int) -> dict[str, Any]:
    """The record's ``disk`` fields: cache bytes this run relies on, what it wrote, the VOC07 extrapolation.

    ``bytes`` counts the feature cache the run used whether written now or reused
    (``written_bytes`` is the part written by this run).
    """
    feat = sum(caches.features.entry_bytes(i) for i in range(num_images))
    bbox = sum(caches.bbox.entry_bytes(i) for i in range(num_images)) if caches.bbox is not None else 0
    per_region = caches.features.bytes_per_region
    images, proposals = VOC07_TRAINVAL
    return {
        "bytes": feat + bbox,
        "items": {"feature_cache": feat, "bbox_reg_cache": bbox},
        "written_bytes": sum(stats.bytes_written.values()),
        "feature_cache": {
            "dir": str(caches.features.dir.parent),
            "entries_reused": stats.reused,
            "entries_computed": stats.computed,
            "regions": stats.regions,
            "regression_examples": stats.regression_examples,
        },
        "extrapolated": {
            "bytes": per_region * images * proposals,
            "to": f"VOC07 trainval: {images} images x {proposals} proposals",
            "layer": caches.layer,
            "dtype": caches.features.dtype,
            "dim": caches.features.dim,
            "bytes_per_proposal": per_region,
            "note": "classifier-layer cache only (the paper's figure); the pool5 box-regression "
            "examples add bbox_reg_cache on top",
        },
    }
