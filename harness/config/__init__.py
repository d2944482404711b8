"""Run configuration: frozen, typed dataclasses with validated ``--set`` overrides.

One place (:mod:`harness.run.builder`) maps this config to constructor calls; detector
code never imports it. Two profiles set the scale:

- ``cpu`` (default): images with a 192-pixel shorter side, anchors 32/64/128 (the
  papers' 128/256/512 scaled with the image), the ``tiny`` backbone; sized so the
  default run finishes in minutes on two CPU cores.
- ``paper``: the papers' settings (600/1000 images, anchors 128/256/512).

Every record stores the profile and the full resolved config.
"""
from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from harness.config.rcnn import (
    RCNN_PAPER,
    RCNN_TRAIN_DEFAULTS,
    RCNNConfig,
    validate_rcnn,
)
from harness.data.synthetic import SyntheticConfig
from harness.data.synthetic_hard import SyntheticHardConfig

# Where each detector's proposals come from: its own network (the RPN) or the data side (selective search
# or an external file, attached to each sample before the network sees it).
PROPOSAL_SOURCE = {"faster": "network", "fast": "data", "rcnn": "data"}
DETECTORS = tuple(PROPOSAL_SOURCE)
PROFILES = ("cpu", "paper")
PRETRAINED_BACKBONES = ("tiny", "resnet18")  # what the built-in pre-training (`harness pretrain`) covers
DEVICES = ("auto", "cpu", "cuda")


class ConfigError(ValueError):
    """A bad configuration value or key, with a message meant for the user."""


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "synthetic"
    train_split: str | None = None  # None: the source's default (trainval/train)
    test_split: str | None = None  # None: the source's default (test/val)
    min_size: int = 192  # shorter side after resizing (papers: 600)
    max_size: int = 320  # longer side cap (papers: 1000)
    flip_prob: float = 0.5  # horizontal flip in training (Fast R-CNN 2.3)
    # multi-scale (Fast R-CNN 5.2, Table 7; fast only): shorter sides of the image pyramid. Training draws one per
    # image (longer side <= max_size); testing runs them all, each RoI pooled at the scale where its area is
    # closest to pyramid_roi_side^2. () or one scale: single-scale (data.min_size)
    scales: tuple[int, ...] = ()
    pyramid_roi_side: float | None = None  # None: 224 scaled like the anchors (224 x min_size / 600: 72 at 192)
    workers: int = 0  # DataLoader worker processes
    split_seed: int = 0  # 80/20 split of VOC / YOLO folders with no split files or folders
    class_names: tuple[str, ...] = ()  # YOLO: names of class ids 0..K-1; VOC: fixed class list (others dropped)
    synthetic: SyntheticConfig = field(default_factory=SyntheticConfig)
    synthetic_hard: SyntheticHardConfig = field(default_factory=SyntheticHardConfig)  # --dataset synthetic-hard


@dataclass(frozen=True)
class ModelConfig:
    backbone: str = "tiny"
    weights: str | None = None  # local state-dict file; None = random init
    weights_partial: bool = False  # load what fits of a weights file that leaves backbone tensors unloaded
    # random | pretrained: the built-in pre-training (`harness pretrain`, cached on first use) of body and FC
    # head | pretrained-body: its body only, FC head random. Ignored with weights. The cpu profile turns it to
    # pretrained where the built-in pre-training covers the backbone and neither model.init nor weights is
    # given (build_config; +18 mAP50 over random init on synthetic-hard, README Pre-training); the paper
    # profile keeps random (it expects ImageNet weights, --weights FILE).
    init: str = "random"
    freeze_stages: int = 0  # early backbone stages not trained
    frozen_bn: bool | None = None  # BatchNorm fixed (FrozenBatchNorm2d); None: frozen when weights are loaded
    # conv weights and activations stored channels-last (NHWC): oneDNN on the CPU and cuDNN tensor cores
    # run convolutions faster in it (9-26 % per backbone pass measured on the 2-core CPU); results equal within
    # float rounding. False: PyTorch's default NCHW.
    channels_last: bool = True
    # FC layers run inference (CPU, float32, no grad) through oneDNN on a weight packed once per weight
    # version (detectors/packed_linear.py): VGG16's fc6 in ~300 instead of ~500 ms on the 2-core CPU; results
    # equal within float rounding; training unchanged. False: F.linear (MKL) everywhere.
    packed_linear: bool = True
    anchor_sizes: tuple[float, ...] = (32.0, 64.0, 128.0)
    anchor_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    rpn_fg_iou: float = 0.7
    rpn_bg_iou: float = 0.3
    rpn_batch_size: int = 256
    rpn_positive_fraction: float = 0.5
    rpn_pre_nms_top_n_train: int = 12000
    rpn_post_nms_top_n_train: int = 2000
    rpn_pre_nms_top_n_test: int = 6000
    rpn_post_nms_top_n_test: int = 300
    rpn_nms_thresh: float = 0.7
    rpn_ignore_cross_boundary: bool = True
    rpn_box_weight: float = 1.0
    # test-time RPN ablations (Faster R-CNN Table 2): no NMS; no cls scores (seeded random order, so no ranking
    # and no NMS either); no box regression (anchors as proposals)
    rpn_test_nms: bool = True
    rpn_test_scores: bool = True
    rpn_test_regression: bool = True
    # RoIs per image. 64 for Fast and Faster R-CNN alike: N = 2 images x 64 = 128 RoIs per mini-batch, Fast
    # R-CNN's hierarchical sampling (2.3), which Faster R-CNN's detector reuses (its code: 128 RoIs per batch);
    # one value for both, so that selective search vs RPN rows differ in the proposals alone.
    roi_batch_size: int = 64
    roi_positive_fraction: float = 0.25
    roi_fg_iou: float = 0.5
    roi_bg_iou_high: float = 0.5
    roi_bg_iou_low: float = 0.1
    pooler: str = "roi_pool"  # or roi_align
    pooled_size: int | None = None  # None: the backbone's (7; 14 for C4 ResNets)
    box_weight: float = 1.0  # lambda of the multi-task loss
    cls_only: bool = False  # train L_cls only, test without box regression (Fast R-CNN 5.1, stage-wise ablation)
    score_thresh: float = 0.05
    nms_thresh: float = 0.3
    max_detections: int = 100


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 8
    images_per_batch: int = 2  # Fast R-CNN: N = 2 images per mini-batch
    lr: float = 0.02
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_steps: tuple[float, ...] = (0.8,)  # fractions of the schedule where lr *= lr_gamma
    lr_gamma: float = 0.1
    warmup_iters: int = 50
    grad_clip: float | None = 10.0  # max gradient norm; None disables clipping
    checkpoint: bool = True  # save a checkpoint after every epoch
    # joint (multi-task; approximate joint for faster) | alternating (faster: 4-step, Faster R-CNN 3.2)
    # | stagewise (fast: L_cls first, then the box regressor alone on the frozen net, Fast R-CNN 5.1)
    scheme: str = "joint"
    box_stage_epochs: int | None = None  # stagewise: epochs of the box-regressor stage (None: train.epochs)
    amp: bool = False  # mixed precision: float16 + loss scaling on CUDA, bfloat16 on the CPU
    log_every: int = 10  # steps between entries of results/<run_id>/train_log.jsonl (and each epoch's end)


@dataclass(frozen=True)
class TestConfig:
    warmup_images: int = 2  # untimed forwards before timing starts
    max_images: int | None = None  # None: the whole test split
    recall_counts: tuple[int, ...] = (10, 50, 100, 300, 1000, 2000)
    # proposal recall against IoU 0.5 ... 0.95 at these counts (Faster R-CNN Fig. 2 / Fast R-CNN Fig. 3); () = off
    recall_iou_counts: tuple[int, ...] = (300, 1000, 2000)
    svd: bool = False  # second test pass with truncated-SVD FC layers (Fast R-CNN 3.1); on for fast
    svd_ranks: tuple[int, ...] = ()  # per FC layer; () = the paper's 1024/4096, 256/4096 of each width
    amp: bool = False  # mixed-precision inference (float16 on CUDA, bfloat16 on the CPU)
    gallery_images: int = 8  # test images kept with their detections for the report's gallery (0: none)
    gallery_seed: int = 0  # picks them by image key, the same images for every run of a dataset
    # False: test with the proposals as boxes, ignoring the trained bbox_pred (Fast R-CNN Table 6's
    # "multi-task training, no test-time box regression" column); fast / faster only
    box_regression: bool = True
    # fast: after the main pass, per-class SVMs (R-CNN's trainer and rcnn.svm_* keys) on the trained net's fc7 RoI
    # features of the training proposals, and a test pass scored by them (Fast R-CNN Table 8): metrics_svm
    svm: bool = False
    # fast: after the main pass, train a Faster R-CNN (its RPN) on the same data and test this selective-search-
    # trained Fast R-CNN on the RPN's proposals: 100/300/1000, no NMS, no cls, no reg (Faster R-CNN Table 2)
    rpn_proposals: bool = False


@dataclass(frozen=True)
class ProposalConfig:
    """Precomputed proposals of Fast R-CNN (selective search, or a file); ignored by faster."""

    source: str = "selective_search"  # selective_search | file
    file: str | None = None  # external proposals (JSON, see README) when source=file
    mode: str = "fast"  # selective search mode: fast (the papers') | quality
    image_min_size: int | None = 192  # shorter side selective search runs at (never upscaled); None: as on disk
    image_max_size: int = 320  # longer side cap of that resize
    max_proposals: int = 2000  # N per image (papers: about 2000)
    box_min_size: float = 2.0  # drop smaller boxes, original pixels (Fast R-CNN code: min_size 2)
    cache_dir: str = "cache/proposals"  # relative to the working directory
    workers: int | None = None  # worker processes that fill the cache; None: one per usable core; 0: the main process
    test_timing: str = "live"  # live: re-time selective search per test image in the run; cache: time stored in the entry


@dataclass(frozen=True)
class RunConfig:
    detector: str = "faster"
    profile: str = "cpu"
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    threads: int | None = None  # torch intra-op threads; None: torch's default
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    test: TestConfig = field(default_factory=TestConfig)
    proposals: ProposalConfig = field(default_factory=ProposalConfig)
    rcnn: RCNNConfig = field(default_factory=RCNNConfig)


PAPER_SCALES = (480, 576, 688, 864, 1200)  # Fast R-CNN 5.2's five scales (longer side <= 2000)

PAPER_PROFILE = {
    "data.min_size": 600,
    "data.max_size": 1000,
    "model.anchor_sizes": (128.0, 256.0, 512.0),
    "model.backbone": "vgg16",
    # both later papers fine-tune from conv3_1 (Fast R-CNN 4.5): VGG16's conv1 and conv2 blocks stay frozen
    "model.freeze_stages": 2,
    "train.lr": 0.001,
    "train.weight_decay": 5e-4,
    "proposals.image_min_size": None,  # selective search on the image as on disk
    "proposals.test_timing": "cache",  # ~2 s per full-size image: not re-run on every test image
    **RCNN_PAPER,  # R-CNN: 224 crops, 16 px context, 2000 proposals
}

# Detector-specific defaults, applied before the profile and user overrides.
DETECTOR_DEFAULTS: dict[str, dict[str, Any]] = {
    # Fast R-CNN 3.1: SVD at test time (a second test pass; the main pass is unchanged)
    "fast": {"test.svd": True},
    # R-CNN: train.* drives its fine-tuning stage (see harness.config.rcnn)
    "rcnn": RCNN_TRAIN_DEFAULTS,
}


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Convert ``value`` (a string from the CLI, or a Python value) to type ``tp``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null", "")):
            return None
        return _convert(value, args[0], key)
    if origin is tuple:
        inner = typing.get_args(tp)[0]
        items = value.split(",") if isinstance(value, str) else list(value)
        return tuple(_convert(v.strip() if isinstance(v, str) else v, inner, key) for v in items if v != "")
    try:
        if tp is bool:
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("1", "true", "yes", "on"):
                return True
            if str(value).lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(value)
        if tp is int and isinstance(value, float) and not value.is_integer():
            raise ValueError(value)
        if tp is int and isinstance(value, str):
            return int(value)
        out = tp(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{key}: expected {getattr(tp, '__name__', tp)}, got {value!r}") from None
    if tp is float and not math.isfinite(out):  # float("nan"), float("inf") parse, but no setting means them
        raise ConfigError(f"{key}: expected a finite number, got {value!r}")
    return out


def config_keys(cfg: Any = None, prefix: str = "") -> dict[str, Any]:
    """Every settable dotted key → its type (e.g. ``"train.lr" → float``)."""
    cls = type(cfg) if cfg is not None else RunConfig
    hints = typing.get_type_hints(cls)
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            out.update(config_keys(tp(), f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = tp
    return out


def apply_overrides(cfg: RunConfig, overrides: dict[str, Any]) -> RunConfig:
    """Return a new config with dotted-key overrides applied, converted and validated."""
    keys = config_keys()
    for key in overrides:
        if key not in keys:
            close = [k for k in keys if k.split(".")[-1] == key.split(".")[-1]]
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ConfigError(f"unknown config key {key!r}{hint}; `harness config` lists every key")
    return _replace(cfg, {k: _convert(v, keys[k], k) for k, v in overrides.items()})


def _replace(obj: Any, values: dict[str, Any]) -> Any:
    direct = {k: v for k, v in values.items() if "." not in k}
    nested: dict[str, dict[str, Any]] = {}
    for k, v in values.items():
        if "." in k:
            head, rest = k.split(".", 1)
            nested.setdefault(head, {})[rest] = v
    for head, sub in nested.items():
        direct[head] = _replace(getattr(obj, head), sub)
    return dataclasses.replace(obj, **direct)


def parse_set_options(items: list[str]) -> dict[str, str]:
    """``["train.lr=0.01", ...]`` → ``{"train.lr": "0.01"}``."""
    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        out[key.strip()] = value.strip()
    return out


def validate(cfg: RunConfig) -> RunConfig:
    """Check values that types alone do not constrain."""
    if cfg.detector not in DETECTORS:
        raise ConfigError(f"unknown detector {cfg.detector!r}; choose from {', '.join(DETECTORS)}")
    if cfg.profile not in PROFILES:
        raise ConfigError(f"unknown profile {cfg.profile!r}; choose from {', '.join(PROFILES)}")
    if cfg.device not in DEVICES:
        raise ConfigError(f"device must be one of {', '.join(DEVICES)}, got {cfg.device!r}")
    if cfg.train.scheme not in ("joint", "alternating", "stagewise"):
        raise ConfigError(f"train.scheme must be joint, alternating or stagewise, got {cfg.train.scheme!r}")
    if cfg.train.scheme == "stagewise" and (cfg.detector != "fast" or cfg.model.cls_only):
        raise ConfigError("train.scheme=stagewise is Fast R-CNN's stage-wise ablation: use --detector fast "
                          "without model.cls_only (box regression is trained in its second stage)")
    if cfg.train.box_stage_epochs is not None and cfg.train.box_stage_epochs < 1:
        raise ConfigError("train.box_stage_epochs must be >= 1")
    if (cfg.train.amp or cfg.test.amp) and cfg.detector == "rcnn":
        raise ConfigError("train.amp / test.amp (--amp) are for Fast and Faster R-CNN; R-CNN runs in float32")
    if len(cfg.data.scales) > 1 and (cfg.detector != "fast" or cfg.test.svm or cfg.test.rpn_proposals):
        raise ConfigError("data.scales (multi-scale training and testing, Fast R-CNN Table 7) is for --detector fast, "
                          "without test.svm / test.rpn_proposals")
    if any(s < 32 or s > cfg.data.max_size for s in cfg.data.scales):
        raise ConfigError("data.scales: every scale must be >= 32 and <= data.max_size")
    rpn_ablation = not (cfg.model.rpn_test_nms and cfg.model.rpn_test_scores and cfg.model.rpn_test_regression)
    if rpn_ablation and cfg.detector != "faster":
        raise ConfigError("model.rpn_test_nms / model.rpn_test_scores / model.rpn_test_regression change the RPN's test-time "
                          "proposals: use --detector faster (or --detector fast with test.rpn_proposals=true)")
    if not cfg.test.box_regression and cfg.detector == "rcnn":
        raise ConfigError("test.box_regression=false is for Fast / Faster R-CNN's bbox_pred; R-CNN's class-specific "
                          "regressors are switched off with rcnn.bbox_reg=false")
    if cfg.train.scheme == "alternating" and cfg.detector != "faster":
        raise ConfigError("train.scheme=alternating is Faster R-CNN's 4-step training: use --detector faster")
    if cfg.model.init not in ("random", "pretrained", "pretrained-body"):
        raise ConfigError(f"model.init must be random, pretrained or pretrained-body, got {cfg.model.init!r}")
    if cfg.model.init != "random" and not cfg.model.weights and cfg.model.backbone not in PRETRAINED_BACKBONES:
        raise ConfigError(f"model.init={cfg.model.init}: built-in pre-training covers tiny and resnet18, not "
                          f"{cfg.model.backbone}; use --weights FILE or --set model.init=random")
    if cfg.model.pooler not in ("roi_pool", "roi_align"):
        raise ConfigError(f"model.pooler must be roi_pool or roi_align, got {cfg.model.pooler!r}")
    _validate_proposals(cfg.proposals)
    checks = {
        "train.epochs": cfg.train.epochs >= 1,
        "train.images_per_batch": cfg.train.images_per_batch >= 1,
        "train.lr": cfg.train.lr > 0,
        "train.log_every": cfg.train.log_every >= 1,
        "test.gallery_images": 0 <= cfg.test.gallery_images <= 12,
        "data.min_size": 32 <= cfg.data.min_size <= cfg.data.max_size,
        "data.flip_prob": 0.0 <= cfg.data.flip_prob <= 1.0,
        "test.recall_iou_counts": all(n >= 1 for n in cfg.test.recall_iou_counts),
        "model.roi_positive_fraction": 0.0 < cfg.model.roi_positive_fraction <= 1.0,
        "model.rpn_positive_fraction": 0.0 < cfg.model.rpn_positive_fraction <= 1.0,
        "model.anchor_sizes": len(cfg.model.anchor_sizes) > 0 and min(cfg.model.anchor_sizes) > 0,
        "model.anchor_ratios": len(cfg.model.anchor_ratios) > 0 and min(cfg.model.anchor_ratios) > 0,
    }
    bad = [k for k, ok in checks.items() if not ok] + validate_rcnn(cfg.rcnn)
    if bad:
        raise ConfigError(f"invalid value for {', '.join(bad)}")
    return cfg


def detector_default(detector: str, profile: str) -> RunConfig:
    """The config of ``detector`` at ``profile`` with no user override (not validated)."""
    cfg = apply_overrides(RunConfig(detector=detector, profile=profile), DETECTOR_DEFAULTS.get(detector, {}))
    return apply_overrides(cfg, PAPER_PROFILE) if profile == "paper" else cfg


def _validate_proposals(p: ProposalConfig) -> None:
    if p.source not in ("selective_search", "file"):
        raise ConfigError(f"proposals.source must be selective_search or file, got {p.source!r}")
    if p.source == "file" and not p.file:
        raise ConfigError("proposals.source=file needs proposals.file=PATH (format: see README, External proposals)")
    if p.mode not in ("fast", "quality"):
        raise ConfigError(f"proposals.mode must be fast or quality, got {p.mode!r}")
    if p.test_timing not in ("live", "cache"):
        raise ConfigError(f"proposals.test_timing must be live or cache, got {p.test_timing!r}")
    if p.image_min_size is not None and not 16 <= p.image_min_size <= p.image_max_size:
        raise ConfigError("invalid value for proposals.image_min_size (16 <= it <= proposals.image_max_size)")
    if p.max_proposals < 1 or p.box_min_size < 0 or (p.workers is not None and p.workers < 0):
        raise ConfigError("invalid value for proposals.max_proposals, box_min_size or workers")


def build_config(
    *, detector: str = "faster", profile: str = "cpu", overrides: dict[str, Any] | None = None
) -> RunConfig:
    """Defaults, then the detector's defaults, then the profile, then user overrides (CLI options and ``--set``),
    then the cpu profile's default init (:func:`default_init`)."""
    overrides = overrides or {}
    return validate(default_init(apply_overrides(detector_default(detector, profile), overrides), overrides))


def default_init(cfg: RunConfig, overrides: dict[str, Any]) -> RunConfig:
    """``cfg`` with ``model.init=pretrained`` where the cpu profile starts from the built-in pre-training: a
    backbone it covers, and neither ``model.init`` nor a weights file in ``overrides`` / ``cfg``. Everywhere
    else (the paper profile, other backbones, an explicit init) ``cfg`` as it is."""
    if (cfg.profile != "cpu" or "model.init" in overrides or cfg.model.weights
            or cfg.model.backbone not in PRETRAINED_BACKBONES):
        return cfg
    return apply_overrides(cfg, {"model.init": "pretrained"})


def flatten_dict(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"train": {"lr": 0.1}}`` -> ``{"train.lr": 0.1}``: a nested config dict under its dotted ``--set`` keys."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flatten_dict(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def to_dict(cfg: Any) -> dict[str, Any]:
    """JSON-ready nested dict (tuples become lists)."""
    return dataclasses.asdict(cfg)
