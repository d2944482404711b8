"""Joint image + target transforms: ``(image, target) -> (image, target)``.

Every transform takes ``image`` as ``float32 Tensor[3, H, W]`` and a target in
the data contract (see :mod:`harness.data.base`) and returns new objects: the
inputs are never modified in place (datasets may memoise their samples, and
the evaluator keeps references to ground truth). Every geometric transform
moves all keys of :data:`~harness.data.base.BOX_KEYS` present in the target
(``boxes`` and, if precomputed, ``proposals``) and updates ``target["size"]``;
``orig_size`` always stays the size on disk so detections can be mapped back.
"""
from __future__ import annotations

import os
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from harness.data.base import BOX_KEYS, Target, Transform
from harness.run.seeding import derive_seed


class Compose:
    """Apply transforms in order."""

    def __init__(self, transforms: Sequence[Transform]) -> None:
        self.transforms = list(transforms)

    def __call__(self, image: Tensor, target: Target) -> tuple[Tensor, Target]:
        for transform in self.transforms:
            image, target = transform(image, target)
        return image, target

    def set_epoch(self, epoch: int) -> None:
        """Pass the epoch on to every transform that draws per-epoch randomness."""
        for transform in self.transforms:
            if hasattr(transform, "set_epoch"):
                transform.set_epoch(epoch)

    def __repr__(self) -> str:
        inner = ", ".join(repr(t) for t in self.transforms)
        return f"Compose([{inner}])"


def resize_scale(height: int, width: int, min_size: int, max_size: int) -> float:
    """Scale factor of the R-CNN papers' single-scale resize.

    The shorter side becomes ``min_size`` unless that would make the longer
    side exceed ``max_size``, in which case the longer side becomes ``max_size``
    (600 / 1000 in the papers).
    """
    short, long = min(height, width), max(height, width)
    scale = min_size / short
    if long * scale > max_size:
        scale = max_size / long
    return scale


def resized_shape(height: int, width: int, min_size: int, max_size: int) -> tuple[int, int]:
    """``(h, w)`` after :class:`Resize`; each side rounded to the nearest pixel (at least 1)."""
    scale = resize_scale(height, width, min_size, max_size)
    # round-half-up rather than Python's banker's rounding, so 37.5 -> 38 and 36.5 -> 37.
    return max(1, int(height * scale + 0.5)), max(1, int(width * scale + 0.5))


def _scale_boxes(target: Target, scale_x: float, scale_y: float) -> Target:
    """New target with every BOX_KEYS entry multiplied by ``(sx, sy, sx, sy)``."""
    out = dict(target)
    factors = torch.tensor([scale_x, scale_y, scale_x, scale_y], dtype=torch.float64)
    for key in BOX_KEYS:
        if key in target:
            boxes = target[key]
            # Scale in float64 so the only rounding is the final cast to the box dtype.
            out[key] = (boxes.to(torch.float64) * factors).to(boxes.dtype)
    return out


class Resize:
    """Single-scale resize of the papers: shorter side ``min_size``, longer side at most ``max_size``.

    The image is resampled bilinearly (``align_corners=False``: pixel centres
    at ``i + 0.5``, matching the continuous box frame). Output sides are
    rounded to whole pixels, so boxes are scaled by the *realised* per-axis
    ratios ``new_w / w`` and ``new_h / h`` rather than the nominal scale; that
    keeps boxes aligned with the pixels actually returned.

    Args:
        min_size: target length of the shorter side (pixels).
        max_size: cap on the longer side (pixels).
    """

    def __init__(self, min_size: int = 600, max_size: int = 1000) -> None:
        if min_size <= 0 or max_size <= 0:
            raise ValueError(f"Resize sizes must be positive, got min_size={min_size}, max_size={max_size}")
        if max_size < min_size:
            raise ValueError(f"Resize max_size ({max_size}) must be >= min_size ({min_size})")
        self.min_size = int(min_size)
        self.max_size = int(max_size)

    def __call__(self, image: Tensor, target: Target) -> tuple[Tensor, Target]:
        """``image: float32 [3, H, W]`` -> ``float32 [3, H', W']``; boxes scaled to match."""
        height, width = int(image.shape[-2]), int(image.shape[-1])
        new_h, new_w = resized_shape(height, width, self.min_size, self.max_size)
        if (new_h, new_w) != (height, width):
            # interpolate wants a batch dim; the result is a new tensor, the input is untouched.
            image = F.interpolate(
                image[None], size=(new_h, new_w), mode="bilinear", align_corners=False
            )[0]
        target = _scale_boxes(target, new_w / width, new_h / height)
        target["size"] = torch.tensor([new_h, new_w], dtype=torch.int64)
        return image, target

    def __repr__(self) -> str:
        return f"Resize(min_size={self.min_size}, max_size={self.max_size})"


def flip_boxes(boxes: Tensor, width: int) -> Tensor:
    """Mirror ``[N, 4]`` xyxy boxes in an image of ``width``: ``x1' = W - x2``, ``x2' = W - x1``."""
    flipped = boxes.clone()
    flipped[:, 0] = width - boxes[:, 2]
    flipped[:, 2] = width - boxes[:, 0]
    return flipped


class RandomHorizontalFlip:
    """Mirror the image left-right with probability ``p`` (Fast R-CNN trains with p = 0.5).

    Args:
        p: flip probability in ``[0, 1]``.
        seed: an ``int`` for a reproducible flip sequence, a ``torch.Generator``
            to share a caller's stream, or ``None`` to draw from torch's global
            RNG (which ``DataLoader`` reseeds per worker).

    With an ``int`` seed the generator is created lazily in the process that
    first calls the transform, seeded from ``(seed, worker id, epoch)``: the
    worker id because otherwise every ``DataLoader`` worker would inherit a copy
    of the same stream and flip the same pattern; the epoch (set by
    :meth:`set_epoch`, 0 until then) so that each epoch's flips depend on
    nothing but ``(seed, epoch)`` and a resumed run flips like an uninterrupted
    one. The sequence is reproducible for a fixed ``(seed, epoch, num_workers)``.
    """

    stream = "flip"  # names this transform's random stream (derive_seed)

    def __init__(self, p: float = 0.5, seed: int | torch.Generator | None = None) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"flip probability must be in [0, 1], got {p}")
        self.p = float(p)
        self.seed = seed
        self._generator: torch.Generator | None = seed if isinstance(seed, torch.Generator) else None
        self._owner: tuple[int, int] | None = None  # (pid, worker id) the generator was made in
        self._epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Start the flip stream of ``epoch`` (int seeds only; a shared generator just continues)."""
        if self.seed is not None and not isinstance(self.seed, torch.Generator):
            self._epoch, self._generator, self._owner = int(epoch), None, None

    def _rng(self) -> torch.Generator | None:
        if self.seed is None or isinstance(self.seed, torch.Generator):
            return self._generator
        info = torch.utils.data.get_worker_info()
        owner = (os.getpid(), info.id if info is not None else -1)
        if self._generator is None or self._owner != owner:
            self._generator = torch.Generator().manual_seed(derive_seed(int(self.seed), self.stream, owner[1], self._epoch))
            self._owner = owner
        return self._generator

    def __call__(self, image: Tensor, target: Target) -> tuple[Tensor, Target]:
        """Flip ``image: float32 [3, H, W]`` and every BOX_KEYS entry, or return copies unchanged."""
        if self.p <= 0.0 or torch.rand((), generator=self._rng()).item() >= self.p:
            return image, dict(target)
        width = int(image.shape[-1])
        out = dict(target)
        for key in BOX_KEYS:
            if key in target:
                out[key] = flip_boxes(target[key], width)
        return image.flip(-1), out

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class RandomScaleResize(RandomHorizontalFlip):
    """Multi-scale training (Fast R-CNN 5.2): each time an image is loaded, a shorter side drawn uniformly
    from ``scales`` (longer side capped at ``max_size``), then as :class:`Resize`.

    The draw uses its own seeded stream (same rules as the flip's: ``(seed, worker, epoch)``).
    """

    stream = "scale"

    def __init__(self, scales: tuple[int, ...], max_size: int, seed: int | torch.Generator | None = None) -> None:
        super().__init__(1.0, seed)
        if not scales:
            raise ValueError("RandomScaleResize needs at least one scale")
        self.resizes = [Resize(s, max(max_size, s)) for s in scales]

    def __call__(self, image: Tensor, target: Target) -> tuple[Tensor, Target]:
        i = int(torch.randint(len(self.resizes), (), generator=self._rng()).item())
        return self.resizes[i](image, target)

    def __repr__(self) -> str:
        return f"RandomScaleResize(scales={[r.min_size for r in self.resizes]})"
