"""Fast R-CNN Table 8: per-class SVMs on Fast R-CNN's own fc7 RoI features, with hard-negative mining.

After joint training, every (un-flipped) training image goes through the trained
network once: its ground-truth boxes and its top-N proposals are RoI-pooled from
the shared feature map and passed through the head's FC layers (fc7 on VGG16).
Those features go to the same on-disk :class:`~harness.train.feature_cache.FeatureCache`
R-CNN uses, in R-CNN's entry layout (gt boxes first), and R-CNN's SVM trainer
(:func:`harness.train.rcnn.svms_from_cache`: positives = gt boxes, negatives =
IoU < ``rcnn.svm_neg_iou`` with every box of the class, hard-negative mining)
fits one linear SVM per class. The SVM settings are R-CNN's ``rcnn.svm_*`` keys.
The SVMs then replace the softmax at test time; boxes still come from bbox_pred.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from detectors.two_stage import TwoStageDetector
from harness.config import RunConfig, to_dict
from harness.data.base import DetectionDataset, training_target
from harness.evaluation.timing import Stopwatch
from harness.train.engine import Progress
from harness.train.feature_cache import FeatureCache, state_dict_digest
from harness.train.rcnn import svms_from_cache, unflipped


def _cache(model: TwoStageDetector, cfg: RunConfig, dataset: DetectionDataset, root: str | Path | None) -> FeatureCache:
    key = {
        "fast_rcnn_checkpoint_sha256": state_dict_digest(model),
        "backbone": cfg.model.backbone,
        "layer": "roi_head.box_head (fc7)",
        "proposals": {k: v for k, v in to_dict(cfg.proposals).items() if k not in ("workers", "cache_dir")},
        "dataset": getattr(dataset, "name", type(dataset).__name__),
        "images": len(dataset),
        "image_size": [cfg.data.min_size, cfg.data.max_size],
        "synthetic": to_dict(cfg.data.synthetic) if cfg.data.dataset == "synthetic" else None,
    }
    dim = model.roi_head.cls_score.in_features
    return FeatureCache(Path(root if root is not None else cfg.rcnn.cache_dir), key, name=f"fast-fc7-{cfg.rcnn.cache_dtype}",
                        dim=dim, dtype=cfg.rcnn.cache_dtype)


@torch.no_grad()
def extract_roi_features(model: TwoStageDetector, dataset: DetectionDataset, cache: FeatureCache, *,
                         max_proposals: int, device: torch.device, progress: Progress | None = None) -> int:
    """fc7 of every image's gt boxes (first) and top ``max_proposals`` proposals into ``cache``; returns regions."""
    model.to(device).eval()
    cache.prepare()
    regions = 0
    bar = progress("svm features", len(dataset)) if progress else None
    for i in range(len(dataset)):
        image, target = dataset[i]
        t = training_target(target)
        boxes = torch.cat((t["boxes"], target["proposals"][:max_proposals])).to(device)
        batch = model.batch_images([image.to(device)])
        feats = model.roi_head.features(model.body(batch.tensors), [boxes])
        cache.write(i, feats.float().cpu(), {"boxes": boxes.cpu().tolist(), "num_gt": int(t["boxes"].shape[0]),
                                             "gt_labels": t["labels"].tolist()})
        regions += boxes.shape[0]
        if bar:
            bar.advance(1)
    if bar:
        bar.close()
    return regions


def fit_fast_svms(model: TwoStageDetector, train_set: DetectionDataset, cfg: RunConfig, *, device: torch.device,
                  progress: Progress | None = None, cache_root: str | Path | None = None) -> dict[str, Any]:
    """Extract, train R-CNN's SVMs, install them on ``model`` (``model.set_svms``); returns the record's figures."""
    features_set = unflipped(train_set, cfg)
    cache = _cache(model, cfg, features_set, cache_root)
    with Stopwatch(device) as extract:
        regions = extract_roi_features(model, features_set, cache, max_proposals=cfg.proposals.max_proposals,
                                       device=device, progress=progress)
    with Stopwatch() as fit:
        weight, bias, scale, info = svms_from_cache(cache, len(features_set), model.roi_head.cls_score.out_features - 1,
                                                    cfg.rcnn, seed=cfg.seed)
    model.set_svms(weight, bias, scale, score_thresh=cfg.rcnn.svm_score_thresh)
    return {**info, "features": "fast rcnn roi_head fc7 (the jointly trained network)", "regions": regions,
            "feature_dim": cache.dim, "neg_iou": cfg.rcnn.svm_neg_iou, "C": cfg.rcnn.svm_c,
            "extract_s": extract.seconds, "svm_s": fit.seconds, "cache_dir": str(cache.dir)}
