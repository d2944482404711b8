"""The one sample type every detector consumes.

Data contract (stated once, used everywhere inside the harness):

- ``image``: ``float32 Tensor[3, H, W]``, RGB, values in ``[0, 1]`` (the
  backbone normalises). ``H, W`` is the size *after* the dataset transforms.
- ``target`` (a plain ``dict``):
    - ``boxes``: ``float32 Tensor[N, 4]`` ``x1, y1, x2, y2`` in absolute pixels
      of ``image`` (0-based, continuous; a VOC box ``[1, 1, 10, 10]`` becomes
      ``[0, 0, 10, 10]``).
    - ``labels``: ``int64 Tensor[N]``, ``1..K``; ``0`` is background and never
      appears in a target.
    - ``difficult``: ``bool Tensor[N]`` (VOC ``difficult``; ignored by VOC AP).
    - ``iscrowd``: ``bool Tensor[N]`` (COCO crowd; evaluated, not trained on).
    - ``image_id``: ``int`` (stable across runs: the index into the split for
      VOC / synthetic, the COCO image id for COCO).
    - ``orig_size``: ``int64 Tensor[2]`` ``(h, w)`` of the image on disk.
    - ``size``: ``int64 Tensor[2]`` ``(h, w)`` of ``image`` as returned.
    - optional ``proposals``: ``float32 Tensor[P, 4]``, same frame as ``boxes``;
      transforms move them exactly like ``boxes``.

Formats are converted only at the edges (loaders in, evaluator / COCO JSON out).
"""
from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

BACKGROUND = "__background__"
BOX_KEYS = ("boxes", "proposals")

Target = dict[str, Any]
Transform = Callable[[Tensor, Target], tuple[Tensor, Target]]
# (index, RGB uint8 [H, W, 3] as decoded) -> float32 [P, 4] proposals in that original frame
ProposalProvider = Callable[[int, np.ndarray], Tensor]


def make_target(
    boxes: Any,
    labels: Any,
    *,
    image_id: int,
    orig_size: tuple[int, int],
    difficult: Any = None,
    iscrowd: Any = None,
) -> Target:
    """Build a target dict in the data contract from array-likes (original image frame)."""
    boxes_t = torch.as_tensor(np.asarray(boxes, dtype=np.float32).reshape(-1, 4))
    labels_t = torch.as_tensor(np.asarray(labels, dtype=np.int64).reshape(-1))
    n = boxes_t.shape[0]
    if labels_t.shape[0] != n:
        raise ValueError(f"{n} boxes but {labels_t.shape[0]} labels (image {image_id})")
    def _flags(x: Any) -> Tensor:
        if x is None:
            return torch.zeros(n, dtype=torch.bool)
        return torch.as_tensor(np.asarray(x, dtype=bool).reshape(-1))
    size = torch.tensor([int(orig_size[0]), int(orig_size[1])], dtype=torch.int64)
    return {
        "boxes": boxes_t,
        "labels": labels_t,
        "difficult": _flags(difficult),
        "iscrowd": _flags(iscrowd),
        "image_id": int(image_id),
        "orig_size": size,
        "size": size.clone(),
    }


def check_target(target: Target) -> None:
    """Raise ``ValueError`` if ``target`` breaks the data contract."""
    boxes, labels = target["boxes"], target["labels"]
    if boxes.dtype != torch.float32 or boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must be float32 [N, 4], got {boxes.dtype} {tuple(boxes.shape)}")
    if labels.dtype != torch.int64 or labels.shape != (boxes.shape[0],):
        raise ValueError(f"labels must be int64 [N], got {labels.dtype} {tuple(labels.shape)}")
    if (labels <= 0).any():
        raise ValueError("labels must be 1..K (0 is background)")
    for key in ("difficult", "iscrowd"):
        if target[key].dtype != torch.bool or target[key].shape != labels.shape:
            raise ValueError(f"{key} must be bool [N]")


def training_target(target: Target) -> Target:
    """The target a detector trains on: crowd and difficult boxes removed.

    Fast / Faster R-CNN reference code excludes VOC ``difficult`` objects from
    training; COCO crowd regions are evaluated but never trained on.
    """
    keep = ~(target["difficult"] | target["iscrowd"])
    out = dict(target)
    for key in ("boxes", "labels", "difficult", "iscrowd"):
        out[key] = target[key][keep]
    return out


def image_to_tensor(image: np.ndarray) -> Tensor:
    """``uint8 [H, W, 3]`` RGB (or 16-bit / gray, normalised) → ``float32 [3, H, W]`` in [0, 1]."""
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    if image.shape[2] == 4:
        image = image[:, :, :3]
    scale = 65535.0 if image.dtype == np.uint16 else 255.0
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float().div_(scale)


class DetectionDataset(torch.utils.data.Dataset, abc.ABC):
    """Base class of every data source (synthetic, VOC, COCO).

    Subclasses implement ``__len__``, ``load_image(i)`` (RGB ``uint8 [H, W, 3]``)
    and ``annotation(i)`` (the target in the *original* image frame, without
    loading pixels, so the evaluator can read ground truth cheaply).

    Attributes:
        class_names: ``class_names[0] == BACKGROUND``; ``class_names[k]`` is label ``k``.
        name: short description used in run records (e.g. ``"voc:bccd/test"``).
        label_to_category: label → external category id (COCO ids; ``k`` elsewhere).
        proposal_provider: optional hook that gives each sample ``target["proposals"]``
            (selective search or a file, for Fast R-CNN / R-CNN), in the original
            frame before the transforms, so they are resized and flipped with the image.
    """

    class_names: tuple[str, ...]
    name: str
    proposal_provider: ProposalProvider | None = None

    def __init__(self, transforms: Transform | None = None) -> None:
        self.transforms = transforms

    @property
    def num_classes(self) -> int:
        """K, the number of object classes (background not counted)."""
        return len(self.class_names) - 1

    @property
    def label_to_category(self) -> dict[int, int]:
        return {k: k for k in range(1, len(self.class_names))}

    @abc.abstractmethod
    def __len__(self) -> int: ...

    @abc.abstractmethod
    def load_image(self, index: int) -> np.ndarray:
        """RGB ``uint8 [H, W, 3]`` of image ``index``."""

    @abc.abstractmethod
    def annotation(self, index: int) -> Target:
        """Target of image ``index`` in the original image frame (no pixels loaded)."""

    def set_epoch(self, epoch: int) -> None:
        """Tell epoch-aware transforms (the seeded flip) which epoch comes next.

        The training loop calls this before each epoch so the flips of epoch ``e``
        depend on ``(seed, e)`` only, and a resumed run flips exactly as an
        uninterrupted one.
        """
        set_epoch = getattr(self.transforms, "set_epoch", None)
        if set_epoch is not None:
            set_epoch(epoch)

    def __getitem__(self, index: int) -> tuple[Tensor, Target]:
        pixels = self.load_image(index)
        image = image_to_tensor(pixels)
        target = self.annotation(index)
        target["size"] = torch.tensor(image.shape[-2:], dtype=torch.int64)
        if self.proposal_provider is not None:
            target["proposals"] = self.proposal_provider(index, pixels)
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target


def collate(batch: list[tuple[Tensor, Target]]) -> tuple[list[Tensor], list[Target]]:
    """Keep images as a list (sizes differ); the model batches and pads them."""
    images, targets = zip(*batch)
    return list(images), list(targets)
