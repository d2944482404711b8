"""A procedurally generated classification set: the built-in ImageNet stand-in for pre-training.

The detection set (:mod:`harness.data.synthetic`) has three classes; this set has
:data:`NUM_CLASSES` (157) in the same visual world: the same cluttered backgrounds,
distractor blobs, outlines and lines, objects at the detection set's object scale
(sides of 20..72 px) with the same kind of fills. A class is one combination of

- shape (8): ellipse, rectangle, triangle, diamond, hexagon, star, cross, ring;
- texture (4): stripes, checkerboard, spots, radial shading;
- colour band (5, HSV hue): red, yellow, green, cyan-blue, purple,

less the three combinations that are the detection classes (a red ellipse with
spots, a blue rectangle with stripes, a green checkered triangle), so that the
stand-in relates to the benchmark as ImageNet does to VOC: related, not the same
labels. Each image shows one object, away from the border, with its tight box;
the classifier of :mod:`harness.train.pretrain` pools the object's box, as the detectors'
RoI heads do.

Every image is a pure function of ``(config, split, index)``: the random stream is
``numpy.random.default_rng([seed, 1000 + split_number, index])`` (disjoint from the
detection set's streams), so the set is identical across runs and processes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from harness.data.drawing import background, draw_lines, hsv_colour
from harness.data.errors import DatasetError
from harness.data.synthetic import clutter

SHAPES: tuple[str, ...] = ("ellipse", "rectangle", "triangle", "diamond", "hexagon", "star", "cross", "ring")
TEXTURES: tuple[str, ...] = ("stripes", "checker", "spots", "radial")
# OpenCV hue ranges (H in [0, 180)); gaps between bands keep colours apart
COLOURS: dict[str, tuple[int, int]] = {
    "red": (0, 10), "yellow": (20, 34), "green": (45, 75), "blue": (95, 125), "purple": (135, 165),
}
# the detection benchmark's own classes (disc, box, triangle), left out
_DETECTION_CLASSES = {("ellipse", "spots", "red"), ("rectangle", "stripes", "blue"), ("triangle", "checker", "green")}
CLASSES: tuple[tuple[str, str, str], ...] = tuple(
    (s, t, c) for s in SHAPES for t in TEXTURES for c in COLOURS if (s, t, c) not in _DETECTION_CLASSES
)
CLASS_NAMES: tuple[str, ...] = tuple("-".join(c) for c in CLASSES)
NUM_CLASSES = len(CLASSES)
SPLITS = ("train", "test")

_OBJ_SAT = (150, 255)
_OBJ_VAL = (150, 255)


@dataclass(frozen=True)
class ClassificationConfig:
    """Size and seed of the classification set."""

    train_images: int = 24000
    test_images: int = 2000
    image_size: int = 96  # square images; objects of 20..72 px (the detection set's 20..90 px at 192)
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("train_images", "test_images"):
            if getattr(self, name) < 1:
                raise DatasetError(f"classification {name} must be >= 1, got {getattr(self, name)}")
        if self.image_size < 48:
            raise DatasetError(f"classification image_size must be >= 48, got {self.image_size}")
        if self.seed < 0:
            raise DatasetError(f"classification seed must be >= 0, got {self.seed}")


def _polygon(shape: str, rng: np.random.Generator, h: int, w: int) -> list[np.ndarray]:
    """Unit-square polygons (x, y in 0..1) of ``shape``; several for the cross."""
    if shape == "rectangle":
        return [np.array([[0, 0], [1, 0], [1, 1], [0, 1]], float)]
    if shape == "triangle":
        apex = float(rng.uniform(0.15, 0.85))
        tri = np.array([[0, 1], [1, 1], [apex, 0]], float)
        k = int(rng.integers(0, 4))  # 4 orientations
        if k == 1:
            tri[:, 1] = 1 - tri[:, 1]
        elif k >= 2:
            tri = tri[:, ::-1].copy()
            if k == 3:
                tri[:, 0] = 1 - tri[:, 0]
        return [tri]
    if shape == "diamond":
        return [np.array([[0.5, 0], [1, 0.5], [0.5, 1], [0, 0.5]], float)]
    if shape == "hexagon":
        a = np.arange(6) * math.pi / 3
        return [np.stack([0.5 + 0.5 * np.cos(a), 0.5 + 0.5 * np.sin(a)], 1)]
    if shape == "star":
        a = np.arange(10) * math.pi / 5 - math.pi / 2
        r = np.where(np.arange(10) % 2 == 0, 0.5, 0.2)
        return [np.stack([0.5 + r * np.cos(a), 0.5 + r * np.sin(a)], 1)]
    # cross: two bars of width t
    t = float(rng.uniform(0.28, 0.4))
    lo, hi = 0.5 - t / 2, 0.5 + t / 2
    return [np.array([[lo, 0], [hi, 0], [hi, 1], [lo, 1]], float), np.array([[0, lo], [1, lo], [1, hi], [0, hi]], float)]


def shape_mask(shape: str, rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """``bool [h, w]`` silhouette of ``shape`` spanning its ``h x w`` patch."""
    mask = np.zeros((h, w), dtype=np.uint8)
    if shape in ("ellipse", "ring"):
        centre = (int(round((w - 1) * 8)), int(round((h - 1) * 8)))
        axes = (int(round((w - 1) * 8)), int(round((h - 1) * 8)))
        cv2.ellipse(mask, centre, axes, 0, 0, 360, 1, -1, cv2.LINE_8, shift=4)
        if shape == "ring":
            inner = float(rng.uniform(0.45, 0.6))
            cv2.ellipse(mask, centre, (int(axes[0] * inner), int(axes[1] * inner)), 0, 0, 360, 0, -1, cv2.LINE_8, shift=4)
    else:
        scale = np.array([w - 1, h - 1], float)
        for poly in _polygon(shape, rng, h, w):
            cv2.fillPoly(mask, [np.round(poly * scale).astype(np.int32)], 1, cv2.LINE_8)
    return mask.astype(bool)


def texture(kind: str, base: np.ndarray, rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """``float32 [h, w, 3]`` fill of ``kind`` in colour ``base`` (RGB, 0..255)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind == "radial":
        r2 = ((xx - (w - 1) / 2) / (w / 2)) ** 2 + ((yy - (h - 1) / 2) / (h / 2)) ** 2
        return (base * np.clip(1.15 - 0.6 * r2, 0.45, 1.15)[..., None]).astype(np.float32)
    if kind == "spots":
        tex = np.broadcast_to(base, (h, w, 3)).astype(np.float32).copy()
        spot = tuple(float(c) for c in 0.45 * base)
        for _ in range(int(rng.integers(3, 7))):
            r = max(1, int(rng.uniform(0.06, 0.14) * min(h, w)))
            cv2.circle(tex, (int(rng.uniform(0.2, 0.8) * w), int(rng.uniform(0.2, 0.8) * h)), r, spot, -1, cv2.LINE_8)
        return tex
    if kind == "stripes":
        period = float(rng.uniform(5.0, 10.0))
        angle = float(rng.uniform(0.0, math.pi))
        phase = (xx * math.cos(angle) + yy * math.sin(angle) + rng.uniform(0, period)) % period
        return np.where((phase < period / 2)[..., None], 0.45 * base, base).astype(np.float32)
    cell = int(rng.integers(3, 7))
    checker = (((xx.astype(np.int32) // cell) + (yy.astype(np.int32) // cell)) % 2 == 1)[..., None]
    return np.where(checker, 0.55 * base, base).astype(np.float32)


def render(rng: np.random.Generator, label: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """One ``size x size`` image of class ``label`` -> (``uint8 [size, size, 3]``, tight box ``float32 [4]``)."""
    shape, kind, colour = CLASSES[label]
    image = background(rng, size, size)
    clutter(rng, image, 2 * size)  # clutter at the detection set's scale (it draws for 192 px)
    side = math.exp(rng.uniform(math.log(0.25 * size), math.log(0.7 * size)))
    aspect = math.exp(rng.uniform(math.log(0.5), math.log(2.0)))
    lo, hi = int(0.21 * size), int(0.75 * size)
    h = int(np.clip(round(side * math.sqrt(aspect)), lo, hi))
    w = int(np.clip(round(side / math.sqrt(aspect)), lo, hi))
    margin = size // 16
    y0 = int(rng.integers(margin, size - h - margin + 1))
    x0 = int(rng.integers(margin, size - w - margin + 1))
    mask = shape_mask(shape, rng, h, w)
    fill = texture(kind, hsv_colour(rng, COLOURS[colour], _OBJ_SAT, _OBJ_VAL), rng, h, w)
    image[y0:y0 + h, x0:x0 + w][mask] = fill[mask]
    ys, xs = np.nonzero(mask)
    box = np.array([x0 + xs.min(), y0 + ys.min(), x0 + xs.max() + 1, y0 + ys.max() + 1], dtype=np.float32)
    draw_lines(rng, image, int(rng.integers(0, 3)))
    image += rng.normal(0.0, 3.0, size=image.shape).astype(np.float32)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), box


def sample(config: ClassificationConfig, split: str, index: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Image ``index`` of ``split``: (``uint8 [S, S, 3]``, box ``float32 [4]``, label in 0..NUM_CLASSES-1)."""
    if split not in SPLITS:
        raise DatasetError(f"unknown classification split {split!r}; choose one of {', '.join(SPLITS)}")
    rng = np.random.default_rng([config.seed, 1000 + SPLITS.index(split), index])
    label = int(rng.integers(0, NUM_CLASSES))
    image, box = render(rng, label, config.image_size)
    return image, box, label


def generate(config: ClassificationConfig, split: str, progress=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The whole split as arrays: images ``uint8 [N, S, S, 3]``, boxes ``float32 [N, 4]``, labels ``int64 [N]``.

    ``progress(n)``, when given, is called after each image.
    """
    n = config.train_images if split == "train" else config.test_images
    size = config.image_size
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    boxes = np.empty((n, 4), dtype=np.float32)
    labels = np.empty(n, dtype=np.int64)
    for i in range(n):
        images[i], boxes[i], labels[i] = sample(config, split, i)
        if progress is not None:
            progress(1)
    return images, boxes, labels
