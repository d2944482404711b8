"""R-CNN's multi-stage training (section 2.3): fine-tune, cache features, SVMs, box regression.

1. **finetune**: the (K+1)-way softmax on warped regions, 32 foreground / 96
   background per mini-batch of 128, drawn uniformly from every region of the
   training set (:mod:`harness.train.rcnn_sampling`; ``rcnn.finetune_sampling=image``:
   from the batch's 2 images instead), by the shared training loop
   (:func:`harness.train.engine.train`: ``train.*`` sets its epochs, lr and schedule;
   checkpoints and resume work as for the other detectors);
2. **features**: the chosen layer of every region of every (un-flipped)
   training image to the on-disk cache (:mod:`harness.train.rcnn_features`);
3. **svm**: one linear SVM per class with hard-negative mining, streamed from the
   cache (skipped by the softmax-classifier ablation);
4. **bbox_reg**: class-specific ridge regression on pool5 (appendix C).

Each stage's wall time goes to the record's ``timing.train_stages``; the cache's
bytes (with the VOC07 extrapolation) to ``disk``; SVM and regression figures to
``rcnn``. :func:`rcnn_trainer` wraps it all in :func:`harness.train.engine.train`'s
signature, so the runner calls it in the same place.
"""
from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torchvision.ops import box_iou

from detectors.rcnn import RCNN
from detectors.rcnn.bbox_reg import ridge_fit, ridge_fit_chunks
from detectors.rcnn.svm import scale_for_norm, train_svms_with_mining
from harness.config import ConfigError, RunConfig, to_dict
from harness.config.rcnn import RCNNConfig, cpu_reductions
from harness.data.base import DetectionDataset
from harness.data.errors import DatasetError
from harness.data.specs import build_transforms
from harness.evaluation.timing import Stopwatch
from harness.run.checkpoint import save_checkpoint
from harness.train.engine import Progress, TrainResult, train
from harness.train.feature_cache import FeatureCache, FeatureCacheError
from harness.train.rcnn_features import (
    ExtractionStats,
    disk_record,
    extract_features,
    open_caches,
)
from harness.train.rcnn_finetuned import FinetunedStore, finetune_key
from harness.train.rcnn_sampling import (
    CACHE_BYTES,
    ImageCache,
    SampledRegions,
    build_pool,
)

log = logging.getLogger(__name__)
MODEL_FILE = "rcnn_model.pt"


@dataclass
class RCNNTrainResult(TrainResult):
    """:class:`~harness.train.engine.TrainResult` of the fine-tuning stage, plus the later stages."""

    stages: dict[str, float] = field(default_factory=dict)
    disk: dict[str, Any] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)

    def record_into(self, record: dict[str, Any]) -> None:
        """Stage times, feature-cache disk use and SVM / regression figures into a run record."""
        record["timing"]["train_stages"] = dict(self.stages)
        record["disk"].update(self.disk)
        record["disk"]["items"] = {**record["disk"].get("items", {}), **self.disk.get("items", {})}
        record["rcnn"] = self.details


def unflipped(dataset: DetectionDataset, cfg: RunConfig) -> DetectionDataset:
    """The training split as R-CNN caches it: same images, proposals and resize, never flipped."""
    twin = copy.copy(dataset)  # shares the proposal provider and any memoised samples
    twin.transforms = build_transforms(cfg.data.min_size, cfg.data.max_size, flip_prob=0.0)
    return twin


def sampled_regions(
    model: RCNN, dataset: DetectionDataset, cfg: RunConfig, *, workers: int = 0, progress: Progress | None = None
) -> SampledRegions:
    """R-CNN's fine-tuning set (``rcnn.finetune_sampling=dataset``): regions of the whole un-flipped split,
    labelled once, drawn uniformly per mini-batch (:mod:`harness.train.rcnn_sampling`)."""
    source = unflipped(dataset, cfg)
    cache = ImageCache(CACHE_BYTES // max(1, workers))  # each DataLoader worker holds its own copy
    pool = build_pool(model, source, cache=cache, progress=progress)
    per_item = max(1, cfg.rcnn.finetune_batch // cfg.train.images_per_batch)  # 128 / 2 images
    try:
        return SampledRegions(source, pool, model, per_item=per_item, fg_fraction=cfg.rcnn.finetune_fg_fraction,
                              flip_prob=cfg.data.flip_prob, seed=cfg.seed, cache=cache)
    except ValueError as err:
        raise DatasetError(str(err)) from None


def _finetune(model: RCNN, dataset: DetectionDataset, cfg: RunConfig, *, device: torch.device, workers: int,
              checkpoint_path: Path | None, progress: Progress | None, resume: dict[str, Any] | None, log: Any,
              sampling: dict[str, Any]) -> TrainResult:
    """Stage 1: the softmax fine-tuning by the shared loop; its seconds include the region pool's pass."""
    finetune_set, pool_seconds = dataset, 0.0
    done = resume is not None and int(resume.get("epoch", 0)) >= cfg.train.epochs  # nothing left to draw
    if cfg.rcnn.finetune_sampling == "dataset" and not done:
        with Stopwatch() as watch:
            finetune_set = sampled_regions(model, dataset, cfg, workers=workers, progress=progress)
        pool_seconds = watch.seconds
        sampling.update(finetune_set.pool.summary(), regions_per_image_slot=finetune_set.per_item,
                        pool_s=pool_seconds)
    ft = train(model, finetune_set, cfg.train, device=device, seed=cfg.seed, workers=workers,
               checkpoint_path=checkpoint_path, progress=progress, resume=resume, run_config=to_dict(cfg),
               log=log.stage("finetune") if log is not None else None)
    ft.seconds += pool_seconds
    return ft


def train_rcnn(
    model: RCNN,
    dataset: DetectionDataset,
    cfg: RunConfig,
    *,
    device: torch.device,
    workers: int = 0,
    checkpoint_path: Path | None = None,
    progress: Progress | None = None,
    resume: dict[str, Any] | None = None,
    cache_root: str | Path | None = None,
    log: Any = None,
) -> RCNNTrainResult:
    """Run the four stages on ``dataset`` (the training split with proposals attached).

    Raises:
        ConfigError: the feature cache does not fit on its disk (the message gives
            the bytes needed and the settings that reduce them).
    """
    r = cfg.rcnn
    sampling: dict[str, Any] = {"mode": r.finetune_sampling}
    store_info: dict[str, Any] = {}
    if r.finetune:
        # a run that differs from an earlier one only after fine-tuning reuses its fine-tuned network
        store = FinetunedStore(Path(cache_root if cache_root is not None else r.cache_dir) / "finetuned")
        key, tree = finetune_key(cfg, model.network, model.train_proposal_source.top_n)
        ft = store.load(key, model.network) if resume is None else None
        store_info = {"key": key, "reused": ft is not None, "path": str(store.path(key))}
        if ft is None:
            ft = _finetune(model, dataset, cfg, device=device, workers=workers, checkpoint_path=checkpoint_path,
                           progress=progress, resume=resume, log=log, sampling=sampling)
            store_info["bytes"] = store.save(key, model.network, ft, tree)
    else:  # table 2's "no fine-tuning" rows: the network as initialised (or loaded with --weights)
        ft = TrainResult()
    result = RCNNTrainResult(**asdict(ft))
    result.stages["finetune"] = ft.seconds  # the region pool pass included; a reused network: as measured then
    model.eval()
    features_set = unflipped(dataset, cfg)
    caches = open_caches(model, cfg, features_set, cache_root)
    try:
        with Stopwatch(device) as watch:
            stats = extract_features(model, features_set, caches, device=device, bbox_min_iou=r.bbox_reg_iou,
                                     progress=progress)
    except FeatureCacheError as err:
        raise ConfigError(f"{err}; free space, set rcnn.cache_dir to a larger disk, or "
                          "rcnn.cache_dtype=float16 (half the bytes)") from err
    result.stages["features"] = watch.seconds
    model.cpu()  # the later stages are linear algebra on cached features
    n = len(features_set)
    with Stopwatch() as watch:
        svm = fit_svms(model, caches.features, n, r, seed=cfg.seed) if r.classifier == "svm" else {"skipped": "softmax"}
    result.stages["svm"] = watch.seconds
    with Stopwatch() as watch:
        bbox = fit_box_regressors(model, caches.bbox, n, r) if caches.bbox is not None else {"skipped": True}
    result.stages["bbox_reg"] = watch.seconds
    model.to(device)
    result.seconds = sum(result.stages.values())  # the record's train_s: all four stages
    result.disk = disk_record(caches, stats, n)
    result.details = _details(model, r, cfg.proposals.max_proposals, stats, svm, bbox)
    result.details["finetune_sampling"] = sampling
    result.details["finetune_store"] = store_info  # key, reused (fine-tuned by an earlier run), path, bytes
    if checkpoint_path is not None:  # the whole detector, SVMs and regressors included
        result.details["model_file"] = str(checkpoint_path.parent / MODEL_FILE)
        save_checkpoint(checkpoint_path.parent / MODEL_FILE, {"model": model.state_dict(), "config": to_dict(cfg)})
    return result


def rcnn_trainer(cfg: RunConfig, *, cache_root: str | Path | None = None) -> Callable[..., RCNNTrainResult]:
    """:func:`train_rcnn` behind :func:`harness.train.engine.train`'s signature (``train_cfg``/``seed`` come from ``cfg``)."""

    def fit(model: RCNN, dataset: DetectionDataset, train_cfg: Any = None, *, device: torch.device, seed: int = 0,
            workers: int = 0, checkpoint_path: Path | None = None, progress: Progress | None = None,
            resume: dict[str, Any] | None = None, run_config: Any = None, log: Any = None) -> RCNNTrainResult:
        return train_rcnn(model, dataset, cfg, device=device, workers=workers, checkpoint_path=checkpoint_path,
                          progress=progress, resume=resume, cache_root=cache_root, log=log)

    return fit


def _negative_chunks(
    cache: FeatureCache, n: int, num_classes: int, scale: float, neg_iou: float
) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
    """One pass over the cache: ``(scaled features [n_i, D], negative mask [n_i, K], ids [n_i])`` per image.

    A region is a negative for class k when its IoU with every class-k gt box is
    below ``neg_iou`` (appendix B: 0.3); gt boxes of other classes count.
    """
    offset = 0
    for i in range(n):
        x, meta = cache.read(i)
        boxes = torch.tensor(meta["boxes"], dtype=torch.float32).reshape(-1, 4)
        g = meta["num_gt"]
        best = torch.zeros(len(boxes), num_classes)
        if g:  # the gt boxes are the first g regions
            onehot = torch.zeros(g, num_classes)
            onehot[torch.arange(g), torch.tensor(meta["gt_labels"]) - 1] = 1.0
            # (n, G, 1) * (1, G, K) -> best IoU with a box of each class: (n, K)
            best = (box_iou(boxes, boxes[:g])[:, :, None] * onehot[None]).amax(dim=1)
        # a region that overlaps no box of the class is always a negative (so neg_iou = 0 keeps exactly those)
        yield x * scale, (best < neg_iou) | (best <= 0), offset + torch.arange(x.shape[0])
        offset += x.shape[0]


def fit_svms(model: RCNN, cache: FeatureCache, n: int, r: RCNNConfig, *, seed: int = 0) -> dict[str, Any]:
    """Per-class SVMs from the cache (positives: gt boxes only; hard-negative mining); installs them."""
    weight, bias, scale, info = svms_from_cache(cache, n, model.num_classes, r, seed=seed)
    model.set_svms(weight, bias, scale)
    return info


def svms_from_cache(
    cache: FeatureCache, n: int, k_classes: int, r: RCNNConfig, *, seed: int = 0
) -> tuple[Tensor, Tensor, float, dict[str, Any]]:
    """Per-class SVMs from a feature cache whose entries hold the gt boxes first (``num_gt``,
    ``gt_labels``, ``boxes``): ``W [K, D]``, ``b [K]``, the feature scale and the record's figures.
    Also Fast R-CNN's SVMs on its own fc7 (Table 8: :mod:`harness.train.fast_svm`)."""
    positives: list[list[Tensor]] = [[] for _ in range(k_classes)]
    norm_sum, count = 0.0, 0
    for i in range(n):  # pass 1: positives and the feature scale
        x, meta = cache.read(i)
        norm_sum += float(x.norm(dim=1).sum())
        count += x.shape[0]
        for j, label in enumerate(meta["gt_labels"]):
            positives[label - 1].append(x[j])
    scale = scale_for_norm(norm_sum / max(count, 1))
    pos = [torch.stack(p) * scale if p else torch.zeros(0, cache.dim) for p in positives]
    generator = torch.Generator().manual_seed(seed)
    weight, bias, stats = train_svms_with_mining(
        pos, lambda: _negative_chunks(cache, n, k_classes, scale, r.svm_neg_iou), C=r.svm_c,
        pos_weight=r.svm_pos_weight, rounds=r.hard_negative_rounds, generator=generator, log=log.info,
    )
    return weight, bias, scale, {"positives": [int(p.shape[0]) for p in pos], "feature_scale": scale,
                                 "mining": asdict(stats)}


def fit_box_regressors(model: RCNN, cache: FeatureCache, n: int, r: RCNNConfig) -> dict[str, Any]:
    """Class-specific ridge regressors (lambda ``rcnn.bbox_reg_lambda``) from the pool5 cache; installs them.

    Each class's solve uses the cheaper form (see :mod:`detectors.rcnn.bbox_reg`):
    its examples in memory when they are fewer than the pool5 dimensions, else a
    streamed ``D x D`` accumulation, so memory stays bounded either way.
    """
    k_classes, dim = model.num_classes, cache.dim
    counts = torch.zeros(k_classes + 1, dtype=torch.int64)
    norm_sum = 0.0
    for i in range(n):  # pass 1: examples per class and the feature scale
        x, meta = cache.read(i)
        norm_sum += float(x.norm(dim=1).sum())
        counts += torch.bincount(torch.tensor(meta["classes"], dtype=torch.int64), minlength=k_classes + 1)
    scale = scale_for_norm(norm_sum / max(int(counts.sum()), 1))

    def chunks(k: int) -> Iterator[tuple[Tensor, Tensor]]:
        for i in range(n):
            x, meta = cache.read(i)
            keep = torch.tensor(meta["classes"], dtype=torch.int64) == k
            yield x[keep] * scale, torch.tensor(meta["targets"], dtype=torch.float32).reshape(-1, 4)[keep]

    weight, bias = torch.zeros(k_classes, dim, 4), torch.zeros(k_classes, 4)
    for k in range(1, k_classes + 1):
        if counts[k] == 0:
            continue  # no example: deltas stay 0, boxes are the proposals
        if counts[k] <= dim:  # filled in place: one [n_k, Dp] copy, not a list of chunks plus their cat
            x, y, start = torch.empty(int(counts[k]), dim), torch.empty(int(counts[k]), 4), 0
            for xi, yi in chunks(k):
                x[start : start + len(xi)], y[start : start + len(xi)] = xi, yi
                start += len(xi)
            w, b = ridge_fit(x, y, r.bbox_reg_lambda)
        else:
            w, b = ridge_fit_chunks(chunks(k), dim, 4, r.bbox_reg_lambda)
        weight[k - 1], bias[k - 1] = w * scale, b  # fold the feature scale into W
    model.set_box_regressors(weight, bias)
    return {"examples_per_class": counts[1:].tolist(), "feature_scale": scale, "lambda": r.bbox_reg_lambda}


def _details(
    model: RCNN, r: RCNNConfig, available: int, stats: ExtractionStats, svm: dict, bbox: dict
) -> dict[str, Any]:
    """The record's ``rcnn`` section."""
    return {
        "crop_size": r.crop_size,
        "context_padding": r.padding(),
        "feature_layer": r.feature_layer,
        "feature_dims": dict(model.network.dims),
        "classifier": r.classifier,
        "max_proposals": {"train": model.train_proposal_source.top_n, "test": model.proposal_source.top_n},
        "cpu_reductions": cpu_reductions(r, available),
        "finetuned": r.finetune,
        "feature_extraction_crops_per_s": stats.crops_per_s,
        "svm": svm,
        "bbox_reg": bbox,
    }
