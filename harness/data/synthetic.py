"""A procedurally generated detection dataset that needs nothing on disk.

Each image is a cluttered background (smooth two-colour gradient, pixel
noise, thin lines, small blobs and thin outlines of random colours) with 2..5
objects from three classes that differ in shape, colour band *and* texture:

=========  ==========================  ================  =========================
class      shape                       colour (HSV hue)  texture
=========  ==========================  ================  =========================
disc       filled ellipse              warm: red-orange  radial shading + dark spots
box        axis-aligned rectangle      cool: cyan-blue   dark stripes, random angle
triangle   triangle, 4 orientations    greens            checkerboard
=========  ==========================  ================  =========================

Hue, saturation, value, texture period and phase vary within each class, so a
detector has to use shape and texture as well as colour, but the classes stay
clearly separable: a small CNN trained from scratch for a few CPU minutes can
reach a high VOC mAP50. Distractors are either much smaller than any object
(blobs at most ~6 % of the image side, objects at least ~10 %) or thin outlines
/ lines, so they are never mistakable for a class.

Objects may overlap (later ones are drawn on top) but every object keeps at
least :data:`MIN_VISIBLE_FRACTION` of its pixels visible, and no two boxes
overlap by more than :data:`MAX_PAIR_IOU` IoU so that per-class NMS at 0.3 (the
R-CNN / Fast R-CNN test setting) cannot suppress a true second object. The box
is always the full, tight extent of the drawn object (occluded part included),
in continuous pixel coordinates: a mask covering pixel columns ``a..b``
(inclusive) gives ``x1 = a``, ``x2 = b + 1``.

Every image is a pure function of ``(config, split, index)``: the random
stream is ``numpy.random.default_rng([seed, split_number, index])`` and all
drawing is integer OpenCV rasterisation, so pixels are identical across runs
and processes and the dataset can be generated lazily in any order.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from harness.data import scene_cache
from harness.data.base import (
    BACKGROUND,
    DetectionDataset,
    Target,
    Transform,
    make_target,
)
from harness.data.drawing import (
    background,
    checker,
    draw_distractors,
    draw_lines,
    ellipse_mask,
    finish,
    hsv_colour,
    object_sampler,
    place_objects,
    shaded_spots,
    stripes,
    triangle_mask,
)
from harness.data.errors import DatasetError

CLASS_NAMES: tuple[str, ...] = (BACKGROUND, "disc", "box", "triangle")
SPLITS: tuple[str, ...] = ("train", "val", "test")

MIN_VISIBLE_FRACTION = 0.5  # an object may be hidden by later ones by at most half its pixels
MAX_PAIR_IOU = 0.25  # below the 0.3 NMS threshold, so two true objects never suppress each other

# Per-class HSV ranges, OpenCV convention (H in [0, 180), S and V in [0, 255]).
# The hue bands leave gaps (22..45, 75..95, 130..180) so classes never share a hue.
_HUE = {1: (0, 22), 2: (95, 130), 3: (45, 75)}
_OBJ_SAT = (150, 255)
_OBJ_VAL = (150, 255)

# Object side lengths as fractions of ``image_size`` (20..90 px at 192).
_SIDE_MIN, _SIDE_MAX = 0.10, 0.47
_SQRT_AREA_RANGE = (0.12, 0.40)  # log-uniform sqrt(area), before the aspect ratio
_ASPECT_RANGE = (0.5, 2.0)  # h / w, log-uniform
_BLOB_MAX = 0.06  # distractor blobs stay well under the smallest object side


@dataclass(frozen=True)
class SyntheticConfig:
    """Size and seed of the synthetic dataset (all three splits)."""

    train_images: int = 240
    val_images: int = 40
    test_images: int = 80
    image_size: int = 192  # image height; widths vary in [5/6, 7/6] of it (160..224 at 192)
    min_objects: int = 2
    max_objects: int = 5
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("train_images", "val_images", "test_images"):
            if getattr(self, name) < 0:
                raise DatasetError(f"{type(self).__name__}.{name} must be >= 0, got {getattr(self, name)}")
        if self.image_size < 64:
            raise DatasetError(f"{type(self).__name__}.image_size must be >= 64, got {self.image_size}")
        if not 1 <= self.min_objects <= self.max_objects:
            raise DatasetError(
                f"{type(self).__name__} needs 1 <= min_objects <= max_objects, "
                f"got {self.min_objects}..{self.max_objects}"
            )
        if self.seed < 0:
            raise DatasetError(f"{type(self).__name__}.seed must be >= 0, got {self.seed}")

    def num_images(self, split: str) -> int:
        """Number of images in ``split`` (one of :data:`SPLITS`)."""
        return {"train": self.train_images, "val": self.val_images, "test": self.test_images}[split]


class Scene(NamedTuple):
    """One generated sample.

    ``image``: RGB ``uint8 [H, W, 3]``; ``boxes``: ``float32 [N, 4]`` xyxy; ``labels``: ``int64 [N]`` in 1..3.
    """

    image: np.ndarray
    boxes: np.ndarray
    labels: np.ndarray


def _shape_mask(rng: np.random.Generator, label: int, h: int, w: int) -> np.ndarray:
    """``bool [h, w]`` silhouette of one object of class ``label`` spanning its patch."""
    if label == 1:  # disc: ellipse inscribed in the patch
        return ellipse_mask(h, w).astype(bool)
    if label == 2:  # box: the patch itself
        return np.ones((h, w), dtype=bool)
    return triangle_mask(rng, h, w).astype(bool)  # one side along a patch edge, apex on the opposite edge


def _texture(rng: np.random.Generator, label: int, h: int, w: int) -> np.ndarray:
    """``float32 [h, w, 3]`` class-specific fill (colour band and pattern)."""
    base = hsv_colour(rng, _HUE[label], _OBJ_SAT, _OBJ_VAL)
    if label == 1:  # radial shading (bright centre, darker rim) + a few dark spots
        return shaded_spots(rng, base, h, w)
    if label == 2:  # dark stripes at a random angle and period
        return stripes(rng, base, h, w, period=(5.0, 10.0), dark=0.45)
    return checker(rng, base, h, w, cell=(3, 7), dark=0.55)  # triangle: checkerboard


def clutter(rng: np.random.Generator, image: np.ndarray, size: int) -> None:
    """This set's distractors (in place): blobs well under, outlines at least, the smallest object's side
    at image size ``size``. The pre-training set draws the same clutter."""
    draw_distractors(rng, image, size, blob_max=_BLOB_MAX, outline_min=_SIDE_MIN)


def render_scene(rng: np.random.Generator, config: SyntheticConfig) -> Scene:
    """Draw one image and its tight boxes from ``rng`` (consumed; same state -> same scene)."""
    size = config.image_size
    height = size
    width = int(round(size * rng.uniform(5 / 6, 7 / 6)))
    image = background(rng, height, width)
    clutter(rng, image, size)

    wanted = int(rng.integers(config.min_objects, config.max_objects + 1))
    sample = object_sampler(size, height, width, num_classes=len(CLASS_NAMES), shape_mask=_shape_mask,
                            side_range=(_SIDE_MIN, _SIDE_MAX), sqrt_area_range=_SQRT_AREA_RANGE,
                            aspect_range=_ASPECT_RANGE)

    boxes, labels = place_objects(
        rng, image, wanted, sample, _texture, max_pair_iou=MAX_PAIR_IOU, min_visible=MIN_VISIBLE_FRACTION
    )
    draw_lines(rng, image, int(rng.integers(0, 3)))  # a few lines cross objects too
    return Scene(*finish(rng, image, boxes, labels))


class SyntheticDataset(DetectionDataset):
    """Deterministic synthetic shapes dataset; see the module docstring.

    Args:
        split: ``"train"``, ``"val"`` or ``"test"`` (independent random streams).
        config: sizes and seed; the default config is the harness default dataset.
        transforms: joint transform applied in ``__getitem__``.
        cache: memoise generated scenes (about 120 KB each at the default size).
        disk_cache: a root folder to keep each generated scene in once drawn, read back by later instances
            and runs (:mod:`harness.data.scene_cache`; ``build_dataset`` passes ``cache/data``); None: draw.
    """

    class_names = CLASS_NAMES
    kind = "synthetic"  # the spec string; also the prefix of ``name``
    default_config: type[SyntheticConfig] = SyntheticConfig
    stream: tuple[int, ...] = ()  # appended to the seed sequence (a subclass's own random streams)

    def __init__(
        self,
        split: str = "train",
        config: SyntheticConfig | None = None,
        transforms: Transform | None = None,
        cache: bool = True,
        disk_cache: Path | None = None,
    ) -> None:
        super().__init__(transforms)
        if split not in SPLITS:
            raise DatasetError(f"unknown {self.kind} split {split!r}; choose one of {', '.join(SPLITS)}")
        self.split = split
        self.config = config if config is not None else self.default_config()
        self.name = f"{self.kind}/{split}"
        self._cache: dict[int, Scene] | None = {} if cache else None
        # <root>/<kind>-<key>: where this config's scenes are kept (None: drawn every time)
        self.scene_dir = None if disk_cache is None else scene_cache.scene_dir(disk_cache, self.kind, self.config)
        self._disk = None if self.scene_dir is None else self.scene_dir / split

    def __len__(self) -> int:
        return self.config.num_images(self.split)

    def scene(self, index: int) -> Scene:
        """The generated sample ``index`` (memoised when ``cache`` is on)."""
        if not 0 <= index < len(self):
            raise IndexError(f"{self.name}: index {index} out of range [0, {len(self)})")
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        path = None if self._disk is None else self._disk / f"{index}.npz"
        scene = None if path is None else scene_cache.load(path, Scene)
        if scene is None:
            rng = np.random.default_rng([self.config.seed, SPLITS.index(self.split), index, *self.stream])
            scene = self.render(rng)
            if path is not None:
                scene_cache.save(path, scene)
        if self._cache is not None:
            self._cache[index] = scene
        return scene

    def render(self, rng: np.random.Generator) -> Scene:
        """One scene from a fresh generator (subclasses draw another world)."""
        return render_scene(rng, self.config)

    def load_image(self, index: int) -> np.ndarray:
        """RGB ``uint8 [H, W, 3]``; a copy, so callers cannot corrupt the memoised scene."""
        return self.scene(index).image.copy()

    def annotation(self, index: int) -> Target:
        """Target in the generated image's frame; ``image_id`` is ``index``."""
        scene = self.scene(index)
        return make_target(
            scene.boxes, scene.labels, image_id=index, orig_size=scene.image.shape[:2]
        )
