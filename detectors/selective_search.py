"""Selective search (Uijlings et al., IJCV 2013) through OpenCV contrib: R-CNN's and Fast R-CNN's proposals.

R-CNN (section 2.1) and Fast R-CNN (section 4.1) take about 2000 boxes per
image from selective search's "fast" mode. It runs outside the network, on the
image as decoded, and costs about 2 s per PASCAL image on a CPU (Fast R-CNN,
section 5: the remaining bottleneck). To keep that affordable the image may be
downscaled first (the ``cpu`` profile runs it at the detector's own 192-pixel
scale); boxes are mapped back to the original frame, deduplicated, filtered by
size and capped at ``max_proposals``, best ranked first.

Shape shorthand: H, W = image size on disk; h, w = size selective search ran at;
P = proposals kept.
"""
from __future__ import annotations

import ctypes
import functools
import hashlib
import json
from dataclasses import asdict, dataclass

import cv2
import numpy as np
import torch
from torch import Tensor
from torchvision.ops import clip_boxes_to_image, remove_small_boxes

MODES = ("fast", "quality")


@dataclass(frozen=True)
class SelectiveSearchParams:
    """Everything that changes selective search's output (and so its cache key).

    Attributes:
        mode: ``"fast"`` (R-CNN / Fast R-CNN default) or ``"quality"`` (more boxes, ~3x slower).
        image_min_size: shorter side the image is resized to before the search
            (never upscaled); ``None`` runs on the image as decoded.
        image_max_size: cap on the longer side of that resize.
        max_proposals: N, boxes kept per image (papers: about 2000).
        box_min_size: boxes narrower or shorter than this (original pixels) are dropped.
    """

    mode: str = "fast"
    image_min_size: int | None = 192
    image_max_size: int = 320
    max_proposals: int = 2000
    box_min_size: float = 2.0

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"selective search mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        if self.max_proposals < 1:
            raise ValueError(f"max_proposals must be >= 1, got {self.max_proposals}")
        if self.image_min_size is not None and not 16 <= self.image_min_size <= self.image_max_size:
            raise ValueError(
                f"need 16 <= image_min_size <= image_max_size, got {self.image_min_size}, {self.image_max_size}"
            )

    def fingerprint(self) -> dict[str, object]:
        """Parameters plus the OpenCV version: the same image gives the same boxes iff these match."""
        return {"method": "selective_search", **asdict(self), "opencv": cv2.__version__}

    def slug(self) -> str:
        """Readable, unique folder name, e.g. ``ss-fast-192x320-n2000-m2-cv5.0.0-1a2b3c4d``."""
        digest = hashlib.sha256(json.dumps(self.fingerprint(), sort_keys=True).encode()).hexdigest()[:8]
        size = "orig" if self.image_min_size is None else f"{self.image_min_size}x{self.image_max_size}"
        return f"ss-{self.mode}-{size}-n{self.max_proposals}-m{self.box_min_size:g}-cv{cv2.__version__}-{digest}"


def search_scale(height: int, width: int, params: SelectiveSearchParams) -> float:
    """Downscale factor (<= 1) of the image selective search runs on; the papers' resize rule."""
    if params.image_min_size is None:
        return 1.0
    scale = params.image_min_size / min(height, width)
    if max(height, width) * scale > params.image_max_size:
        scale = params.image_max_size / max(height, width)
    return min(1.0, scale)


def _seed_ranking() -> None:
    """Make the ranking reproducible.

    OpenCV ranks the hierarchy's regions by level times a random number drawn
    with C's ``rand()`` (selective search, section 3.3: "pseudo-random
    ranking"), so the same image in the same process gives a different order
    on every call. Seeding libc's generator before each search makes the
    output a function of the image alone. Where libc cannot be reached the
    order stays random, and nothing else changes.
    """
    libc = _libc()
    if libc is not None:
        libc.srand(0)


@functools.lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    return libc if hasattr(libc, "srand") else None


def selective_search(image: np.ndarray, params: SelectiveSearchParams) -> Tensor:
    """Selective-search proposals of one image.

    Args:
        image: RGB ``uint8 [H, W, 3]`` as decoded (the dataset's ``load_image``).
        params: mode, resize, cap and minimum size.
    Returns:
        ``float32 [P, 4]`` xyxy boxes in absolute pixels of the ``H x W`` image,
        inside the image, no duplicates, best ranked first, ``P <= max_proposals``.
    """
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"selective search needs an RGB uint8 [H, W, 3] image, got {image.dtype} {image.shape}")
    height, width = image.shape[:2]
    scale = search_scale(height, width, params)
    small_h, small_w = max(1, round(height * scale)), max(1, round(width * scale))
    # OpenCV's colour strategies convert from BGR (to HSV, Lab): give it BGR.
    bgr = cv2.cvtColor(image, cv2.COLOR_RGB2BGR)
    if (small_h, small_w) != (height, width):
        bgr = cv2.resize(bgr, (small_w, small_h), interpolation=cv2.INTER_AREA)
    search = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    search.setBaseImage(bgr)
    if params.mode == "fast":
        search.switchToSelectiveSearchFast()
    else:
        search.switchToSelectiveSearchQuality()
    _seed_ranking()
    rects = np.asarray(search.process(), dtype=np.int64).reshape(-1, 4)  # (x, y, w, h), ranked
    # several strategies find the same region: keep each box at its best rank
    _, first = np.unique(rects, axis=0, return_index=True)
    rects = rects[np.sort(first)]
    boxes = torch.from_numpy(rects.astype(np.float64))
    # (x, y, w, h) -> (x1, y1, x2, y2): a w-pixel rect starting at x covers [x, x + w)
    boxes[:, 2:] += boxes[:, :2]
    boxes *= torch.tensor([width / small_w, height / small_h] * 2, dtype=torch.float64)
    boxes = clip_boxes_to_image(boxes.float(), (height, width))
    boxes = boxes[remove_small_boxes(boxes, params.box_min_size)]
    return boxes[: params.max_proposals].contiguous()
