"""COCO instances JSON loader (``images``, ``annotations``, ``categories``).

- Labels: categories sorted by category id get contiguous labels ``1..K``;
  :attr:`COCODataset.label_to_category` maps them back for COCO result files.
- Boxes: COCO ``bbox`` is ``[x, y, w, h]`` in the continuous 0-based frame
  already, so the only conversion is ``x2 = x + w``, ``y2 = y + h``. Boxes
  with ``w <= 0`` or ``h <= 0`` are dropped and boxes reaching outside the
  image are clipped, each with a logged warning. NaN or infinity (which
  Python's ``json`` accepts as ``NaN`` / ``Infinity``) in a ``bbox``, an
  ``area`` or an image's ``width`` / ``height`` is an error naming the file
  and the annotation or image.
- Crowd regions (``iscrowd = 1``) are kept with ``iscrowd = True`` (evaluated
  as "ignore" regions, removed by :func:`~harness.data.base.training_target`).
- Images without annotations are kept (they still contribute false positives).
- ``image_id`` is the COCO image id; images are ordered by id.

Splits: a single COCO file has no train/test partition, so ``split="train"``
/ ``"test"`` selects a deterministic 80 / 20 partition by image id: an image
is in ``test`` iff ``int(sha256(str(image_id)).hexdigest(), 16) % 100 >= 80``. The hash
(not Python's salted ``hash``) makes the assignment identical across runs and
machines, and each image's side depends only on its own id, so adding images
to the file never moves existing ones between splits. ``None`` / ``"all"``
keeps every image. Small files can give uneven or even empty splits (logged).
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from harness.data.base import (
    BACKGROUND,
    DetectionDataset,
    Target,
    Transform,
    make_target,
)
from harness.data.errors import DatasetError
from harness.data.imageio import check_size, read_rgb

log = logging.getLogger(__name__)

COCO_SPLITS = ("all", "train", "test")
TEST_PERCENT = 20


def coco_split_of(image_id: int) -> str:
    """``"train"`` or ``"test"``: the deterministic 80 / 20 hash split of one image id."""
    bucket = int(hashlib.sha256(str(int(image_id)).encode()).hexdigest(), 16) % 100
    return "test" if bucket >= 100 - TEST_PERCENT else "train"


def _require(entry: dict[str, Any], keys: tuple[str, ...], where: str, path: Path) -> None:
    if not isinstance(entry, dict):
        raise DatasetError(f"{path}: {where} must be an object, got {type(entry).__name__}")
    missing = [k for k in keys if k not in entry]
    if missing:
        raise DatasetError(f"{path}: {where} is missing key(s) {', '.join(missing)}")


def _finite(value: Any, where: str) -> int:
    """An image size as an int; NaN / inf (Python's json reads ``NaN``, ``Infinity``) is an error naming it."""
    number = float(value)  # a non-number: ValueError / TypeError -> "malformed COCO JSON" in build_dataset
    if not math.isfinite(number):
        raise DatasetError(f"{where} is {value!r}; every number in an annotation must be finite")
    return int(number)


def _check_finite(ann: dict[str, Any], where: str) -> None:
    """Every number of an annotation's ``bbox`` and its ``area`` (when given) is finite."""
    bbox = ann["bbox"]
    try:
        values = [float(v) for v in bbox]
    except (TypeError, ValueError):
        raise DatasetError(f"{where} has bbox {bbox!r}, expected [x, y, w, h]") from None
    if len(values) != 4:
        raise DatasetError(f"{where} has bbox {bbox!r}, expected [x, y, w, h]")
    if not all(math.isfinite(v) for v in values):
        raise DatasetError(f"{where} has bbox {bbox!r}; every number in an annotation must be finite")
    area = ann.get("area")
    if area is not None:
        try:
            ok = math.isfinite(float(area))
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise DatasetError(f"{where} has area {area!r}; expected a finite number")


class COCODataset(DetectionDataset):
    """Images and boxes of a COCO instances JSON.

    Args:
        annotation_json: path of the instances file.
        images_dir: folder the ``file_name`` entries are relative to (default:
            the folder of the JSON). File names may not leave it.
        transforms: joint transform applied in ``__getitem__``.
        split: ``None`` / ``"all"``, ``"train"`` or ``"test"`` (see module docstring).
    """

    def __init__(
        self,
        annotation_json: str | Path,
        images_dir: str | Path | None = None,
        transforms: Transform | None = None,
        split: str | None = None,
    ) -> None:
        super().__init__(transforms)
        path = Path(annotation_json)
        split = "all" if split is None else split
        if split not in COCO_SPLITS:
            raise DatasetError(f"unknown COCO split {split!r}; choose one of {', '.join(COCO_SPLITS)}")
        self.split = split
        self.annotation_json = path
        self.images_dir = Path(images_dir) if images_dir is not None else path.parent
        self.name = f"coco:{path.stem}/{split}"
        self.layout = "COCO instances JSON"
        self.split_rule = ("every image" if split == "all" else
                           f"{100 - TEST_PERCENT}/{TEST_PERCENT} train/test by image id (sha256, fixed)")
        data = self._read_json(path)

        categories = sorted(data["categories"], key=lambda c: self._category_id(c, path))
        self._category_of_label = {k: int(c["id"]) for k, c in enumerate(categories, start=1)}
        label_of_category = {cat: k for k, cat in self._category_of_label.items()}
        if len(label_of_category) != len(categories):
            raise DatasetError(f"{path}: duplicate category ids")
        self.class_names = (BACKGROUND, *(str(c["name"]) for c in categories))

        images: dict[int, dict[str, Any]] = {}
        for entry in data["images"]:
            _require(entry, ("id", "file_name", "width", "height"), "an images entry", path)
            image_id = int(entry["id"])
            if image_id in images:
                raise DatasetError(f"{path}: duplicate image id {image_id}")
            images[image_id] = entry
        per_image: dict[int, list[dict[str, Any]]] = {i: [] for i in images}
        for ann in data["annotations"]:
            _require(ann, ("image_id", "category_id", "bbox"), "an annotations entry", path)
            where = f"{path}: annotation {ann.get('id', '?')}"
            if int(ann["image_id"]) not in per_image:
                raise DatasetError(f"{where} refers to unknown image id {ann['image_id']}")
            if int(ann["category_id"]) not in label_of_category:
                raise DatasetError(f"{where} refers to unknown category id {ann['category_id']}")
            _check_finite(ann, where)
            per_image[int(ann["image_id"])].append(ann)

        self.image_ids = [i for i in sorted(images) if split == "all" or coco_split_of(i) == split]
        if not self.image_ids:
            log.warning("%s: split %r is empty (%d images in the file)", path, split, len(images))
        self._files: list[Path] = []
        self._sizes: list[tuple[int, int]] = []
        self._targets: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        for image_id in self.image_ids:
            entry = images[image_id]
            self._files.append(self._image_file(str(entry["file_name"]), path))
            size = (_finite(entry["height"], f"{path}: image {image_id} height"),
                    _finite(entry["width"], f"{path}: image {image_id} width"))
            self._sizes.append(size)
            self._targets.append(self._convert(per_image[image_id], size, label_of_category, path))

    @staticmethod
    def _read_json(path: Path) -> dict[str, Any]:
        if not path.is_file():
            raise DatasetError(f"COCO annotation file {str(path)!r} does not exist")
        try:
            data = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DatasetError(f"{path}: not valid JSON: {exc}") from None
        _require(data, ("images", "annotations", "categories"), "the top level", path)
        return data

    @staticmethod
    def _category_id(category: Any, path: Path) -> int:
        _require(category, ("id", "name"), "a categories entry", path)
        return int(category["id"])

    def _image_file(self, file_name: str, json_path: Path) -> Path:
        """``images_dir / file_name``, refusing names that are absolute or climb out with ``..``."""
        relative = Path(file_name)
        if relative.is_absolute() or ".." in relative.parts or not file_name:
            raise DatasetError(
                f"{json_path}: refusing image file_name {file_name!r} (must stay inside {self.images_dir})"
            )
        return self.images_dir / relative

    @staticmethod
    def _convert(
        anns: list[dict[str, Any]], size: tuple[int, int], label_of: dict[int, int], path: Path
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """COCO annotations of one image -> ``boxes [N, 4]`` xyxy, ``labels [N]``, ``iscrowd [N]``."""
        height, width = size
        boxes, labels, crowd = [], [], []
        for ann in anns:
            where = f"{path}: annotation {ann.get('id', '?')}"
            try:
                x, y, w, h = (float(v) for v in ann["bbox"])
            except (TypeError, ValueError):
                raise DatasetError(f"{where} has bbox {ann['bbox']!r}, expected [x, y, w, h]") from None
            if w <= 0 or h <= 0:
                log.warning("%s: dropping degenerate bbox %s", where, ann["bbox"])
                continue
            box = (x, y, x + w, y + h)
            clipped = (max(box[0], 0.0), max(box[1], 0.0), min(box[2], float(width)), min(box[3], float(height)))
            if clipped != box:
                if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
                    log.warning("%s: dropping bbox %s outside its %dx%d image", where, ann["bbox"], width, height)
                    continue
                log.warning("%s: clipping bbox %s to its %dx%d image", where, ann["bbox"], width, height)
            boxes.append(clipped)
            labels.append(label_of[int(ann["category_id"])])
            crowd.append(bool(ann.get("iscrowd", 0)))
        return (
            np.asarray(boxes, dtype=np.float32).reshape(-1, 4),
            np.asarray(labels, dtype=np.int64),
            np.asarray(crowd, dtype=bool),
        )

    @property
    def label_to_category(self) -> dict[int, int]:
        """Contiguous label ``1..K`` -> COCO category id."""
        return dict(self._category_of_label)

    @property
    def category_to_label(self) -> dict[int, int]:
        """COCO category id -> contiguous label ``1..K``."""
        return {cat: k for k, cat in self._category_of_label.items()}

    def __len__(self) -> int:
        return len(self.image_ids)

    def image_path(self, index: int) -> Path:
        """Path of image ``index`` on disk."""
        return self._files[index]

    def load_image(self, index: int) -> np.ndarray:
        """RGB ``uint8 [H, W, 3]``; a file that cannot be read is a DatasetError naming it."""
        path = self._files[index]
        image = read_rgb(path, dataset=self.name)  # rules for gray / RGBA / 16-bit / EXIF: harness.data.imageio
        check_size(image.shape, self._sizes[index], path, dataset=self.name, source="the JSON")
        return image

    def annotation(self, index: int) -> Target:
        """Target in the image-on-disk frame; ``image_id`` is the COCO image id."""
        boxes, labels, crowd = self._targets[index]
        return make_target(boxes, labels, image_id=self.image_ids[index], orig_size=self._sizes[index], iscrowd=crowd)
