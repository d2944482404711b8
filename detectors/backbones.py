"""Backbones shared by the three detectors: a stride-16 conv body and its FC "box head".

Every backbone gives the same two parts, so R-CNN (crop -> body -> head), Fast
R-CNN and Faster R-CNN (body once per image -> RoI pool -> head) differ only in
how regions reach the head:

- ``body``: normalised ``[B, 3, H, W]`` -> ``[B, C, ceil(H/16), ceil(W/16)]``.
- ``box_head``: pooled ``[R, C, S, S]`` -> ``[R, D]`` (fc6/fc7, or res5 for C4).

``tiny`` (default) trains from random init on two CPU cores in minutes;
``resnet18`` / ``resnet50`` (C4 layout: res2-res4 body, res5 head, as in
Faster R-CNN's ResNet variant) and ``vgg16`` (conv5_3 without the last max-pool,
fc6/fc7 head, as in the papers) come from ``torchvision.models``. No weights are
downloaded: random init, or a local state-dict file.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torchvision import models
from torchvision.ops import FrozenBatchNorm2d

from detectors.weights import WeightsReport, load_backbone_weights, read_state_dict

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class BackboneParts:
    """What a detector needs from a backbone.

    Attributes:
        body, out_channels: the stride-16 conv body and C.
        box_head, representation_size: the FC layers and D.
        pooled_size: S, the RoI grid the head expects (7; 14 for C4 ResNets).
        stages: the body's stages in order, for freezing early ones.
        mean, std: input normalisation (images arrive in [0, 1]).
    """

    body: nn.Module
    out_channels: int
    box_head: nn.Module
    representation_size: int
    pooled_size: int
    stages: list[nn.Module]
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    stride: int = 16
    weights_report: WeightsReport | None = None  # what loading a weights file did (None: random init)


def _conv_bn(cin: int, cout: int, stride: int = 1, norm: type[nn.Module] = nn.BatchNorm2d) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), norm(cout), nn.ReLU(inplace=True))


def _tiny(frozen_bn: bool) -> tuple[nn.Module, BackboneParts]:
    """Four stride-2 stages (32-64-128-160 channels) and a 256-d two-layer FC head."""
    n = FrozenBatchNorm2d if frozen_bn else nn.BatchNorm2d
    stages = [
        _conv_bn(3, 32, 2, n),
        nn.Sequential(_conv_bn(32, 64, 2, n), _conv_bn(64, 64, norm=n)),
        nn.Sequential(_conv_bn(64, 128, 2, n), _conv_bn(128, 128, norm=n)),
        nn.Sequential(_conv_bn(128, 160, 2, n), _conv_bn(160, 160, norm=n)),
    ]
    body = nn.Sequential(*stages)
    head = nn.Sequential(
        nn.Flatten(), nn.Linear(160 * 7 * 7, 256), nn.ReLU(inplace=True), nn.Linear(256, 256), nn.ReLU(inplace=True)
    )
    root = nn.ModuleDict({"body": body, "box_head": head})
    return root, BackboneParts(body, 160, head, 256, 7, stages)


def _resnet(name: str, frozen_bn: bool) -> tuple[nn.Module, BackboneParts]:
    norm = FrozenBatchNorm2d if frozen_bn else nn.BatchNorm2d
    net = getattr(models, name)(weights=None, norm_layer=norm)
    stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool)
    stages = [stem, net.layer1, net.layer2, net.layer3]
    body = nn.Sequential(*stages)
    head = nn.Sequential(net.layer4, nn.AdaptiveAvgPool2d(1), nn.Flatten())
    channels, rep = (256, 512) if name == "resnet18" else (1024, 2048)
    return net, BackboneParts(body, channels, head, rep, 14, stages)


def _vgg16(frozen_bn: bool) -> tuple[nn.Module, BackboneParts]:
    net = models.vgg16(weights=None)
    feats = list(net.features.children())[:30]  # up to relu5_3: the last max-pool is dropped
    # conv blocks end at each max-pool: conv1, conv2, conv3, conv4, conv5
    cuts = [0, 5, 10, 17, 24, 30]
    stages = [nn.Sequential(*feats[a:b]) for a, b in zip(cuts, cuts[1:])]
    body = nn.Sequential(*stages)
    head = nn.Sequential(nn.Flatten(), *list(net.classifier.children())[:-1])  # fc6, fc7 (with dropout)
    return net, BackboneParts(body, 512, head, 4096, 7, stages)


BACKBONES: dict[str, Callable[[bool], tuple[nn.Module, BackboneParts]]] = {
    "tiny": _tiny,
    "resnet18": lambda w: _resnet("resnet18", w),
    "resnet50": lambda w: _resnet("resnet50", w),
    "vgg16": _vgg16,
}


def build_backbone(
    name: str, *, weights: str | Path | None = None, freeze_stages: int = 0, frozen_bn: bool | None = None,
    weights_partial: bool = False,
) -> BackboneParts:
    """Build a registered backbone.

    Args:
        name: one of :data:`BACKBONES`.
        weights: local state-dict file: the full torchvision classifier (e.g. an ImageNet
            ``resnet50`` checkpoint) or the backbone's own ``{body, box_head}`` names; loaded with
            ``weights_only=True``. Every body and head tensor must load (see :mod:`detectors.weights`);
            ``parts.weights_report`` says what did.
        freeze_stages: how many early body stages get ``requires_grad = False``
            (Fast R-CNN fine-tunes VGG16 from conv3_1: 2).
        weights_partial: load what fits of a file that leaves backbone tensors unloaded, instead of
            refusing it (recorded as partial).
        frozen_bn: BatchNorm layers as ``FrozenBatchNorm2d`` (fixed statistics and affine, as
            detectron2 / torchvision fine-tune pre-trained backbones). None (default): frozen when
            ``weights`` are given; from random init BN must learn, so it stays trainable.
    """
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose from {', '.join(BACKBONES)}")
    root, parts = BACKBONES[name](weights is not None if frozen_bn is None else frozen_bn)
    if weights is not None:
        parts.weights_report = load_backbone_weights(
            root, {"body": parts.body, "box_head": parts.box_head}, weights, backbone=name,
            registry=BACKBONES, partial=weights_partial)
    if not 0 <= freeze_stages <= len(parts.stages):
        raise ValueError(f"freeze_stages must be in 0..{len(parts.stages)} for {name}, got {freeze_stages}")
    for stage in parts.stages[:freeze_stages]:
        for p in stage.parameters():
            p.requires_grad_(False)
        freeze_mode(stage)
    return parts


class FrozenStage(nn.Sequential):
    """A frozen body stage: ``train()`` leaves it (and its BatchNorm statistics) in eval mode."""

    def train(self, mode: bool = True) -> "FrozenStage":
        return super().train(False)


def freeze_mode(stage: nn.Module) -> None:
    """Keep ``stage`` in eval mode whatever ``model.train()`` says: frozen weights, frozen BatchNorm statistics.

    The stage keeps its parameters, buffers and state-dict keys (only its class changes), so checkpoints
    and weight files load as before.
    """
    if not isinstance(stage, nn.Sequential):
        raise TypeError(f"a frozen stage must be an nn.Sequential, got {type(stage).__name__}")
    stage.__class__ = FrozenStage
    stage.eval()


def load_state_dict_file(module: nn.Module, path: str | Path) -> None:
    """Load a local state dict into any module, keeping the tensors whose name and shape match.

    Never a pickle of code (``weights_only=True``). A file that matches none of the module's keys is
    an error. Backbones go through :func:`detectors.weights.load_backbone_weights`, which also refuses
    a file that leaves tensors unloaded.
    """
    state = read_state_dict(path)
    own = module.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not usable:
        raise ValueError(f"{path}: no tensor matches the module's parameters (wrong architecture?)")
    module.load_state_dict(usable, strict=False)
