"""Shared helpers of the R-CNN tests: synthetic proposals and a tiny R-CNN."""
from __future__ import annotations

import numpy as np
import torch

from harness.config import build_config
from harness.data import SyntheticConfig, build_dataset
from harness.run.builder import build_model


def jittered_proposals(boxes: torch.Tensor, height: int, width: int, *, per_box: int = 8, random: int = 16,
                       seed: int = 0) -> torch.Tensor:
    """Stand-in for selective search: jittered copies of the gt ``boxes [G, 4]`` plus random boxes.

    Returns ``float32 [G * per_box + random, 4]`` inside the image.
    """
    g = torch.Generator().manual_seed(seed)
    parts = []
    if boxes.numel():
        wh = (boxes[:, 2:] - boxes[:, :2]).repeat_interleave(per_box, 0)
        jitter = (torch.rand(wh.shape[0], 4, generator=g) - 0.5) * 0.3 * torch.cat((wh, wh), 1)
        parts.append(boxes.repeat_interleave(per_box, 0) + jitter)
    xy = torch.rand(random, 2, generator=g) * torch.tensor([width * 0.7, height * 0.7])
    size = torch.rand(random, 2, generator=g) * torch.tensor([width * 0.3, height * 0.3]) + 8
    parts.append(torch.cat((xy, xy + size), 1))
    out = torch.cat(parts)
    out[:, 0::2] = out[:, 0::2].clamp(0, width)
    out[:, 1::2] = out[:, 1::2].clamp(0, height)
    return out.float()


class JitteredProposals:
    """A dataset ``proposal_provider`` (index, RGB pixels) -> proposals, from the dataset's own gt."""

    def __init__(self, dataset, **kwargs) -> None:
        self.dataset, self.kwargs = dataset, kwargs

    def __call__(self, index: int, pixels: np.ndarray) -> torch.Tensor:
        boxes = self.dataset.annotation(index)["boxes"]
        return jittered_proposals(boxes, pixels.shape[0], pixels.shape[1], seed=index, **self.kwargs)


def tiny_dataset(images: int = 3, split: str = "train", size: int = 96):
    """A few synthetic images at ``size`` px with jittered-gt proposals attached."""
    synthetic = SyntheticConfig(train_images=images, val_images=1, test_images=images, seed=1)
    ds = build_dataset("synthetic", split, min_size=size, max_size=size * 4 // 3, synthetic=synthetic)
    ds.proposal_provider = JitteredProposals(ds)
    return ds


def tiny_rcnn(**overrides):
    """An R-CNN on the tiny backbone with small crops; returns ``(model, cfg)``."""
    settings = {"rcnn.crop_size": 32, "rcnn.max_proposals_train": 40, "rcnn.max_proposals_test": 40,
                "rcnn.batch_size": 64, **overrides}
    cfg = build_config(detector="rcnn", overrides=settings)
    torch.manual_seed(0)
    return build_model(cfg, num_classes=3), cfg
