"""Supervised pre-training of a backbone on the built-in classification set (the papers' ImageNet stage).

The classifier is the detectors' own region path: ``body -> RoI max pooling of the
object's box to the head's P x P grid -> box_head -> Linear(K)``, i.e. exactly what
Fast / Faster R-CNN's RoI head runs on a proposal (and what R-CNN runs on a warped
crop), so the FC head learns on the inputs it will see in detection: RoI-pooled grids
of objects at the detection data's scale, not whole-image grids.

The output is a state dict named as the backbone's own modules (``body.*`` and
``box_head.*`` for ``tiny``; torchvision names for ``resnet18``), so ``--weights FILE``
loads it with :func:`detectors.backbones.load_state_dict_file`, and a JSON sidecar
(``FILE.json``) with the classes, epochs, held-out top-1, wall and CPU time, the
SHA-256 of the weights file and the pre-training config.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import roi_pool

from detectors.backbones import BACKBONES, BackboneParts
from harness.config import PRETRAINED_BACKBONES as PRETRAIN_BACKBONES
from harness.data import classification as cls_data
from harness.run.storage import atomic_torch_save, atomic_write_bytes


@dataclass(frozen=True)
class PretrainConfig:
    """Everything that determines a pre-trained weights file (its cache key)."""

    backbone: str = "tiny"
    # 12, not 3: at 3 epochs (held-out top-1 0.27) the file made detection worse than random init on
    # synthetic-hard; at 12 (0.955, 560 s on 2 cores) it beats it by 18 points (docs/pretraining.md)
    epochs: int = 12
    train_images: int = 12000
    test_images: int = 1000
    image_size: int = 96
    seed: int = 0
    batch_size: int = 64
    optimizer: str = "sgd"  # sgd | adamw
    lr: float = 0.1  # peak (after warm-up), cosine decay to 0
    momentum: float = 0.9
    weight_decay: float = 1e-4
    warmup_iters: int = 100
    box_jitter: float = 0.1  # each box side moves by up to this fraction of the box size (augmentation)
    flip: bool = True
    label_smoothing: float = 0.1

    def validate(self) -> None:
        if self.backbone not in PRETRAIN_BACKBONES:
            raise ValueError(f"pretrain backbone must be one of {', '.join(PRETRAIN_BACKBONES)}, got {self.backbone!r}")
        if self.epochs < 1:
            raise ValueError(f"pretrain epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 2:
            raise ValueError(f"pretrain batch_size must be >= 2, got {self.batch_size}")
        if self.optimizer not in ("sgd", "adamw"):
            raise ValueError(f"pretrain optimizer must be sgd or adamw, got {self.optimizer!r}")
        if not self.lr > 0:
            raise ValueError(f"pretrain lr must be > 0, got {self.lr}")

    def data(self) -> cls_data.ClassificationConfig:
        return cls_data.ClassificationConfig(train_images=self.train_images, test_images=self.test_images,
                                             image_size=self.image_size, seed=self.seed)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def digest(self) -> str:
        """Short hash of the config (and the class list): the cache key of its weights file."""
        blob = json.dumps({"config": self.to_dict(), "classes": cls_data.CLASS_NAMES, "version": 1}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


class RegionClassifier(nn.Module):
    """``body -> roi_pool(box, P x P) -> box_head -> Linear(K)`` on normalised images."""

    def __init__(self, parts: BackboneParts, num_classes: int) -> None:
        super().__init__()
        self.body, self.box_head = parts.body, parts.box_head
        self.pooled_size, self.stride = parts.pooled_size, parts.stride
        self.fc = nn.Linear(parts.representation_size, num_classes)
        self.register_buffer("mean", torch.tensor(parts.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(parts.std).view(1, 3, 1, 1), persistent=False)

    def forward(self, images: Tensor, boxes: Tensor) -> Tensor:
        """``images`` uint8 ``[B, 3, S, S]``, ``boxes`` ``[B, 4]`` xyxy pixels -> logits ``[B, K]``."""
        x = ((images.float() / 255.0) - self.mean) / self.std
        feats = self.body(x)
        idx = torch.arange(len(boxes), dtype=boxes.dtype).unsqueeze(1)
        pooled = roi_pool(feats, torch.cat([idx, boxes], 1), self.pooled_size, 1.0 / self.stride)
        return self.fc(self.box_head(pooled))


def _backbone_state(root: nn.Module, *modules: nn.Module) -> dict[str, Tensor]:
    """The root's state dict restricted to the tensors of ``modules`` (the root's names kept)."""
    own = {id(t) for m in modules for t in m.state_dict(keep_vars=True).values()}
    return {k: v.detach().clone().contiguous() for k, v in root.state_dict(keep_vars=True).items() if id(v) in own}


def _augment(images: Tensor, boxes: Tensor, cfg: PretrainConfig, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    boxes = boxes.clone()
    size = images.shape[-1]
    if cfg.box_jitter > 0:
        wh = (boxes[:, 2:] - boxes[:, :2]).repeat(1, 2)
        boxes += (torch.rand(boxes.shape, generator=gen) * 2 - 1) * cfg.box_jitter * wh
        boxes = boxes.clamp(0, size)
    if cfg.flip:
        flip = torch.rand(len(images), generator=gen) < 0.5
        images = images.clone()
        images[flip] = images[flip].flip(-1)
        x1 = boxes[flip, 0].clone()
        boxes[flip, 0] = size - boxes[flip, 2]
        boxes[flip, 2] = size - x1
    return images, boxes


@torch.no_grad()
def evaluate(model: RegionClassifier, images: Tensor, boxes: Tensor, labels: Tensor, batch: int = 256) -> float:
    """Top-1 accuracy on tight boxes."""
    model.eval()
    correct = 0
    for i in range(0, len(images), batch):
        correct += int((model(images[i:i + batch], boxes[i:i + batch]).argmax(1) == labels[i:i + batch]).sum())
    return correct / len(images)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def pretrain(
    cfg: PretrainConfig,
    out: Path,
    progress: Callable[[str, int], Callable[..., None]] | None = None,
    log: Callable[[str], None] = lambda msg: None,
) -> dict:
    """Pre-train ``cfg.backbone`` and write ``out`` (weights) and ``out.json`` (sidecar); returns the sidecar.

    ``progress(desc, total)`` returns an ``advance(n, **fields)`` callable (the CLI's rich bars).
    """
    cfg.validate()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    data = cfg.data()

    def bar(desc: str, total: int) -> Callable[..., None]:
        return progress(desc, total) if progress is not None else (lambda n=1, **kw: None)

    arrays = {}
    for split in cls_data.SPLITS:
        n = data.train_images if split == "train" else data.test_images
        images, boxes, labels = cls_data.generate(data, split, progress=bar(f"generate {split}", n))
        arrays[split] = (torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(), torch.from_numpy(boxes),
                         torch.from_numpy(labels))
    gen_s = time.perf_counter() - wall0

    root, parts = BACKBONES[cfg.backbone](False)  # trainable BatchNorm while pre-training
    model = RegionClassifier(parts, cls_data.NUM_CLASSES)
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.ndim > 1]
    no_decay = [p for p in params if p.ndim <= 1]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if cfg.optimizer == "sgd":
        opt: torch.optim.Optimizer = torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=True)
    else:
        opt = torch.optim.AdamW(groups, lr=cfg.lr)
    images, boxes, labels = arrays["train"]
    steps_per_epoch = len(images) // cfg.batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"pretrain needs at least batch_size={cfg.batch_size} train images, got {len(images)}")
    total = steps_per_epoch * cfg.epochs
    warm = min(cfg.warmup_iters, max(1, total // 5))

    def factor(it: int) -> float:
        if it < warm:
            return (it + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * (it - warm) / max(1, total - warm)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    history = []
    advance = bar("pretrain", total)
    for epoch in range(cfg.epochs):
        model.train()
        order = torch.randperm(len(images), generator=gen)
        loss_sum, correct, seen = 0.0, 0, 0
        for step in range(steps_per_epoch):
            idx = order[step * cfg.batch_size:(step + 1) * cfg.batch_size]
            x, b = _augment(images[idx], boxes[idx], cfg, gen)
            logits = model(x, b)
            loss = F.cross_entropy(logits, labels[idx], label_smoothing=cfg.label_smoothing)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"pretrain loss is {loss.item()} at epoch {epoch + 1} step {step}; lower the lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.item() * len(idx)
            correct += int((logits.argmax(1) == labels[idx]).sum())
            seen += len(idx)
            advance(1, loss=loss_sum / seen)
        top1 = evaluate(model, *arrays["test"])
        history.append({"epoch": epoch + 1, "train_loss": round(loss_sum / seen, 4),
                        "train_top1": round(correct / seen, 4), "test_top1": round(top1, 4)})
        log(f"epoch {epoch + 1}: loss {loss_sum / seen:.3f}, train top-1 {correct / seen:.3f}, held-out top-1 {top1:.3f}")

    out = Path(out)
    atomic_torch_save(out, _backbone_state(root, parts.body, parts.box_head), what="pre-trained weights")
    sidecar = {
        "name": f"synthetic-cls{cls_data.NUM_CLASSES}-{cfg.backbone}-{cfg.digest()}",
        "backbone": cfg.backbone,
        "weights": out.name,
        "sha256": sha256_file(out),
        "classes": list(cls_data.CLASS_NAMES),
        "num_classes": cls_data.NUM_CLASSES,
        "epochs": cfg.epochs,
        "top1_heldout": history[-1]["test_top1"],
        "heldout_images": cfg.test_images,
        "history": history,
        "wall_s": round(time.perf_counter() - wall0, 1),
        "generate_s": round(gen_s, 1),
        "cpu_s": round(time.process_time() - cpu0, 1),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "config": cfg.to_dict(),
        "config_hash": cfg.digest(),
    }
    atomic_write_bytes(sidecar_path(out), (json.dumps(sidecar, indent=2) + "\n").encode(), what="sidecar")
    return sidecar


def sidecar_path(weights: Path) -> Path:
    return Path(weights).with_name(Path(weights).name + ".json")


def default_path(cfg: PretrainConfig, cache_dir: str | Path = "cache/pretrained") -> Path:
    """Where the cached weights of ``cfg`` live: ``<cache_dir>/<backbone>-<config hash>.pt``."""
    return Path(cache_dir) / f"{cfg.backbone}-{cfg.digest()}.pt"


CACHE_DIR = Path("cache/pretrained")  # relative to the working directory, as the proposal cache
# Environment: HARNESS_PRETRAIN_CACHE moves the cache (e.g. one cache for several checkouts);
# HARNESS_PRETRAIN_OVERRIDES (JSON, PretrainConfig fields) changes the default recipe: the test suite
# sets a seconds-long one, so that no test run, in-process or a subprocess, pre-trains for minutes.
# Either way the recipe is in the file's config hash, its sidecar and every record's init.


def default_config(backbone: str) -> PretrainConfig:
    """The recipe ``model.init=auto|pretrained`` uses (see the environment variables above)."""
    overrides = json.loads(os.environ.get("HARNESS_PRETRAIN_OVERRIDES") or "{}")
    return PretrainConfig(backbone=backbone, **overrides)


def cached_path(backbone: str, cache_dir: str | Path | None = None, config: PretrainConfig | None = None) -> Path:
    """Where :func:`cached_pretrained` keeps (or will train) the default pre-training of ``backbone``."""
    cfg = config if config is not None else default_config(backbone)
    return default_path(cfg, cache_dir if cache_dir is not None else
                        os.environ.get("HARNESS_PRETRAIN_CACHE") or CACHE_DIR)


def cached_pretrained(
    backbone: str, cache_dir: str | Path | None = None, log: Callable[[str], None] = lambda msg: None,
    config: PretrainConfig | None = None,
) -> tuple[Path, dict]:
    """The default pre-training of ``backbone``: its weights file and sidecar, trained on first use.

    The file is ``<cache_dir>/<backbone>-<config hash>.pt``; it is trained only when missing (or its
    sidecar does not match it), so a changed :class:`PretrainConfig` gives a new file, never a silent reuse.
    """
    cfg = config if config is not None else default_config(backbone)
    path = cached_path(backbone, cache_dir, cfg)
    side = sidecar_path(path)
    if path.is_file() and side.is_file():
        meta = json.loads(side.read_text())
        if meta.get("config_hash") == cfg.digest() and meta.get("sha256") == sha256_file(path):
            return path, meta
        log(f"pre-trained cache entry {path} does not match its sidecar; training it again")
    log(f"pre-training {backbone} once on the built-in classification set (cached as {path}; "
        "tiny: about 10 minutes on 2 cores)")
    meta = pretrain(cfg, path, log=log)
    return path, meta


def describe(meta: dict) -> str:
    """The record's ``init`` for a pre-trained backbone: ``pretrained (<name>, sha256 <hex>)``."""
    return f"pretrained ({meta['name']}, sha256 {meta['sha256']})"


def init_mode(cfg) -> str:
    """How ``cfg`` (a :class:`harness.config.RunConfig`) initialises its backbone:
    weights | pretrained (body and FC head) | pretrained-body (FC head random) | random.

    ``model.weights`` wins over ``model.init``.
    """
    return "weights" if cfg.model.weights else cfg.model.init


def body_only(path: Path, backbone: str) -> tuple[Path, str]:
    """``path``'s body tensors alone, as ``<path stem>.body.pt`` beside it (written once); (file, its SHA-256)."""
    out = path.with_name(path.stem + ".body.pt")
    if not out.is_file():
        root, parts = BACKBONES[backbone](False)
        keys = set(_backbone_state(root, parts.body))
        state = torch.load(path, map_location="cpu", weights_only=True)
        atomic_torch_save(out, {k: v for k, v in state.items() if k in keys}, what="pre-trained body")
    return out, sha256_file(out)


def resolve_init(cfg, log: Callable[[str], None] = lambda msg: None):
    """``(cfg with model.weights set to the cached pre-trained file where init says so, record's init)``.

    Trains the default pre-training on first use (see :func:`cached_pretrained`).
    """
    from harness.config import ConfigError, apply_overrides

    mode = init_mode(cfg)
    if mode == "weights":
        return cfg, f"weights:{cfg.model.weights}"
    if mode == "random":
        return cfg, "random"
    if cfg.model.backbone not in PRETRAIN_BACKBONES:
        raise ConfigError(f"model.init=pretrained: built-in pre-training covers {', '.join(PRETRAIN_BACKBONES)}, "
                          f"not {cfg.model.backbone}; use --weights FILE or --set model.init=random")
    path, meta = cached_pretrained(cfg.model.backbone, log=log)
    if mode == "pretrained-body":
        path, digest = body_only(path, cfg.model.backbone)
        # the file holds the body alone: the FC head stays random on purpose (recorded as a partial load)
        return (apply_overrides(cfg, {"model.weights": str(path), "model.weights_partial": True}),
                f"pretrained-body ({meta['name']}, body only, FC head random; sha256 {digest})")
    return apply_overrides(cfg, {"model.weights": str(path)}), describe(meta)
