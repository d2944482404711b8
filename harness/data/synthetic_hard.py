"""``synthetic-hard``: a harder generated detection benchmark (12 classes in 6 look-alike pairs).

Built from the same drawing code as :mod:`.synthetic` (:mod:`.drawing`), but
made to leave room between methods:

- **12 classes in 6 pairs that differ in one cue only** (as VOC's cat/dog):

  ===============  ===============  =================  ======================================
  pair             classes          shared             differs in
  ===============  ===============  =================  ======================================
  round            ellipse, octagon stripes, orange    outline: smooth vs 8 straight sides
  four-sided       rect, roundrect  dots, blue         corners: sharp vs rounded
  triangle         tri-checker,     triangle, green    texture: checkerboard vs stripes
                   tri-striped
  diamond          diamond-striped, diamond, purple    texture: stripes vs dots
                   diamond-dotted
  five-fold        pentagon, star   checker, red       outline: convex vs 5-point star
  disc             disc, ring       shading, cyan      a hole in the middle
  ===============  ===============  =================  ======================================

  Some pairs' hue bands touch, saturation and value vary widely, and the
  background patchwork takes any colour, so colour is a weak cue.
- **Small and large objects**: sqrt(area) log-uniform from 18 % to 50 % of the
  image height (``min_object_size`` / ``max_object_size``: 58..160 px at the
  default 320, sides clipped to 19..160 px; occluded objects' boxes are
  smaller), so that at the ``cpu`` profile's 192-px detector scale sqrt(area)
  is 35..96 px against anchors of 32..128. With 10..45 % (the first version)
  random-init Faster R-CNN at the presets' scale stayed near 0.32 mAP50, with
  coarser textures as well; larger objects were the lever (README,
  "synthetic-hard").
- **3..10 objects per image with occlusion**: later objects are drawn on top,
  each object keeps at least :data:`MIN_VISIBLE_FRACTION` of its pixels, and no
  two boxes overlap by more than :data:`MAX_PAIR_IOU` IoU (below the 0.3 test
  NMS, so a true second object is never suppressed by the first).
- **Dense clutter**: besides :mod:`.synthetic`'s blobs, outlines and lines, a
  patchwork of 600..750 flat polygons and ellipses of any colour (radius
  8..25 px at 320) covers the background (the large objects hide much of
  it, hence twice the first version's 300..450). It gives selective search (fast
  mode, run on the image as generated: ``proposals.image_min_size=none``)
  more than 2000 boxes per image, so the 300 / 1000 / 2000 proposal rows
  differ (README, "synthetic-hard"; at the default 192-px search scale it is
  about 1000).

Every image is a pure function of ``(config, split, index)``: the random
stream is ``numpy.random.default_rng([seed, split_number, index, 16])`` (the
trailing 16 keeps it apart from ``synthetic``'s stream) and all drawing is
integer OpenCV rasterisation.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from harness.data.base import BACKGROUND
from harness.data.drawing import (
    background,
    checker,
    dots,
    draw_distractors,
    draw_lines,
    ellipse_mask,
    finish,
    hsv_colour,
    object_sampler,
    place_objects,
    polygon_mask,
    shaded_spots,
    stripes,
    triangle_mask,
)
from harness.data.errors import DatasetError
from harness.data.synthetic import Scene, SyntheticConfig, SyntheticDataset

CLASS_NAMES: tuple[str, ...] = (
    BACKGROUND,
    "ellipse", "octagon",
    "rect", "roundrect",
    "tri-checker", "tri-striped",
    "diamond-striped", "diamond-dotted",
    "pentagon", "star",
    "disc", "ring",
)
# (label, label) pairs that share everything but one cue; see the module docstring
SIMILAR_PAIRS: tuple[tuple[int, int], ...] = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12))

MIN_VISIBLE_FRACTION = 0.5
MAX_PAIR_IOU = 0.25
STREAM = 16  # last element of the seed sequence

# Hue band (OpenCV H, 0..179; 180..184 wraps to red-orange) of each pair; some bands touch (100, 180 = 0).
_PAIR_HUE = {0: (10, 26), 1: (100, 124), 2: (42, 72), 3: (130, 158), 4: (172, 184), 5: (82, 100)}
_OBJ_SAT = (110, 255)
_OBJ_VAL = (110, 255)
_ASPECT_RANGE = (0.6, 1.67)  # h / w, log-uniform
_SIDE_MIN = 0.06
_SIDE_MAX = 0.5
_BLOB_MAX = 0.04
# Pattern scales in pixels of the generated image (the detector sees it at 2/3 of that at data.min_size 192)
_STRIPE_PERIOD = (6.0, 12.0)
_DOT_PERIOD = (7.0, 12.0)
_CHECKER_CELL = (4, 9)  # rng.integers bounds
_PATCH_HSV = ((0, 179), (0, 255), (30, 230))  # background patchwork: any colour, flat (objects are patterned)
_PATCH_RADIUS = (0.025, 0.08)  # log-uniform, fraction of the image height
_PATCH_COUNT = (600, 750)  # distractor blobs: under the smallest objects


@dataclass(frozen=True)
class SyntheticHardConfig(SyntheticConfig):
    """Size and seed of ``synthetic-hard`` (the fields of :class:`SyntheticConfig`, other defaults)."""

    train_images: int = 400
    val_images: int = 50
    test_images: int = 200
    image_size: int = 320  # image height; widths vary in [5/6, 7/6] of it (267..373)
    min_objects: int = 3
    max_objects: int = 10
    seed: int = 0
    # sqrt(area) of an object, log-uniform between these fractions of the image height (before occlusion)
    min_object_size: float = 0.18
    max_object_size: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 < self.min_object_size <= self.max_object_size <= 1:
            raise DatasetError(
                f"{type(self).__name__} needs 0 < min_object_size <= max_object_size <= 1 (fractions of the "
                f"image height), got {self.min_object_size}..{self.max_object_size}"
            )


def _unit_polygon(sides: int, start: float, inner: float | None = None) -> np.ndarray:
    """Regular polygon (or star with ``inner`` radius ratio) in the unit square, vertices from angle ``start``."""
    k = sides * (2 if inner else 1)
    angles = start + np.arange(k) * 2 * math.pi / k
    radii = np.ones(k) if not inner else np.where(np.arange(k) % 2 == 0, 1.0, inner)
    pts = np.stack([np.cos(angles) * radii, np.sin(angles) * radii], axis=1)
    pts = (pts - pts.min(0)) / np.ptp(pts, axis=0)  # stretch to touch all four sides
    return pts


_OCTAGON = _unit_polygon(8, math.pi / 8)
_DIAMOND = np.array([[0.5, 0.0], [1.0, 0.5], [0.5, 1.0], [0.0, 0.5]])


def _rounded_rect_mask(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    mask = np.zeros((h, w), dtype=np.uint8)
    r = max(1, int(round(rng.uniform(0.22, 0.4) * min(h, w))))
    cv2.rectangle(mask, (r, 0), (w - 1 - r, h - 1), 1, -1)
    cv2.rectangle(mask, (0, r), (w - 1, h - 1 - r), 1, -1)
    for cx, cy in ((r, r), (w - 1 - r, r), (r, h - 1 - r), (w - 1 - r, h - 1 - r)):
        cv2.circle(mask, (cx, cy), r, 1, -1, cv2.LINE_8)
    return mask


def _shape_mask(rng: np.random.Generator, label: int, h: int, w: int) -> np.ndarray:
    """``bool [h, w]`` silhouette of class ``label`` spanning its patch."""
    if label in (1, 11):
        mask = ellipse_mask(h, w)
    elif label == 2:
        mask = polygon_mask(h, w, _OCTAGON)
    elif label == 3:
        mask = np.ones((h, w), dtype=np.uint8)
    elif label == 4:
        mask = _rounded_rect_mask(rng, h, w)
    elif label in (5, 6):
        mask = triangle_mask(rng, h, w)
    elif label in (7, 8):
        mask = polygon_mask(h, w, _DIAMOND)
    elif label == 9:
        mask = polygon_mask(h, w, _unit_polygon(5, -math.pi / 2 + math.pi * int(rng.integers(0, 2))))
    elif label == 10:
        mask = polygon_mask(h, w, _unit_polygon(5, -math.pi / 2 + math.pi * int(rng.integers(0, 2)), inner=0.5))
    else:  # ring: an ellipse with a concentric elliptic hole
        mask = ellipse_mask(h, w)
        frac = rng.uniform(0.45, 0.6)
        ih, iw = max(1, int(round(h * frac))), max(1, int(round(w * frac)))
        y0, x0 = (h - ih) // 2, (w - iw) // 2
        mask[y0 : y0 + ih, x0 : x0 + iw] &= 1 - ellipse_mask(ih, iw)
    return mask.astype(bool)


def _texture(rng: np.random.Generator, label: int, h: int, w: int) -> np.ndarray:
    """``float32 [h, w, 3]``: the pair's hue band, the class's pattern."""
    base = hsv_colour(rng, _PAIR_HUE[(label - 1) // 2], _OBJ_SAT, _OBJ_VAL)
    if label in (1, 2, 6, 7):
        return stripes(rng, base, h, w, period=_STRIPE_PERIOD, dark=0.5)
    if label in (3, 4, 8):
        return dots(rng, base, h, w, period=_DOT_PERIOD, dark=0.45)
    if label in (5, 9, 10):
        return checker(rng, base, h, w, cell=_CHECKER_CELL, dark=0.55)
    return shaded_spots(rng, base, h, w)  # disc, ring


def _patchwork(rng: np.random.Generator, image: np.ndarray, size: int, count: int) -> None:
    """Muted filled ellipses and polygons up to about object size: background regions (in place)."""
    height, width = image.shape[:2]
    for _ in range(count):
        colour = tuple(float(c) for c in hsv_colour(rng, *_PATCH_HSV))
        centre = np.array([rng.integers(0, width), rng.integers(0, height)])
        radius = max(2, int(math.exp(rng.uniform(*(math.log(r * size) for r in _PATCH_RADIUS)))))
        if rng.random() < 0.5:
            axes = (radius, int(rng.integers(max(1, radius // 3), radius + 1)))
            cv2.ellipse(image, (int(centre[0]), int(centre[1])), axes, float(rng.uniform(0, 180)), 0, 360,
                        colour, -1, cv2.LINE_8)
        else:
            pts = rng.integers(-radius, radius + 1, size=(int(rng.integers(3, 7)), 2)) + centre
            cv2.fillPoly(image, [pts.astype(np.int32)], colour, cv2.LINE_8)


def render_hard_scene(rng: np.random.Generator, config: SyntheticHardConfig) -> Scene:
    """Draw one ``synthetic-hard`` image and its tight boxes from ``rng`` (consumed)."""
    size = config.image_size
    height = size
    width = int(round(size * rng.uniform(5 / 6, 7 / 6)))
    image = background(rng, height, width)
    _patchwork(rng, image, size, int(rng.integers(*_PATCH_COUNT)))
    draw_distractors(rng, image, size, blob_max=_BLOB_MAX, outline_min=0.08, blobs=(10, 30), outlines=(1, 4),
                     lines=(4, 10))

    wanted = int(rng.integers(config.min_objects, config.max_objects + 1))
    sample = object_sampler(size, height, width, num_classes=len(CLASS_NAMES), shape_mask=_shape_mask,
                            side_range=(_SIDE_MIN, _SIDE_MAX),
                            sqrt_area_range=(config.min_object_size, config.max_object_size),
                            aspect_range=_ASPECT_RANGE, min_side_px=6)

    boxes, labels = place_objects(
        rng, image, wanted, sample, _texture, max_pair_iou=MAX_PAIR_IOU, min_visible=MIN_VISIBLE_FRACTION
    )
    draw_lines(rng, image, int(rng.integers(0, 4)))
    return Scene(*finish(rng, image, boxes, labels))


class SyntheticHardDataset(SyntheticDataset):
    """Deterministic ``synthetic-hard`` dataset; see the module docstring. Arguments as :class:`SyntheticDataset`."""

    class_names = CLASS_NAMES
    kind = "synthetic-hard"
    default_config = SyntheticHardConfig
    stream: tuple[int, ...] = (STREAM,)

    def render(self, rng: np.random.Generator) -> Scene:
        return render_hard_scene(rng, self.config)
