"""PASCAL VOC layout loader (``Annotations/*.xml``, ``JPEGImages/*.jpg``, ``ImageSets/Main/<split>.txt``).

Coordinates: VOC boxes are 1-based *inclusive* pixel indices. They are
converted once, here, to the harness frame (0-based, continuous, the box
covers ``[x1, x2) x [y1, y2)``)::

    x1 = xmin - 1    y1 = ymin - 1    x2 = xmax    y2 = ymax

so ``<xmin>1</xmin> ... <xmax>10</xmax>`` (pixels 1..10, ten wide) becomes
``x1 = 0, x2 = 10``.

Annotation problems are repaired or dropped with a ``logging`` warning that
names the file and the box, never a crash:

- *degenerate* boxes, ``xmax <= xmin`` or ``ymax <= ymin`` in the file (a box
  at most one pixel wide, i.e. an annotation click, or an inverted box), are
  dropped. BCCD has two such 1 x 1 "boxes";
- boxes reaching outside the image size in the XML are clipped to it.

Label mapping: unless ``class_names`` is given, classes are the sorted set of
object names over *every* annotation listed in *any* ``ImageSets/Main``
split file of the root, so all splits of one root share one mapping (a class
absent from the test split still gets the same label as in training).
"""
from __future__ import annotations

import functools
import logging
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

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

# ``ImageSets/Main`` also holds per-class files such as ``dog_trainval.txt``; they are not splits.
_CLASS_SPLIT_FILE = re.compile(r".+_(train|val|trainval|test)$")


def resolve_voc_root(root: str | Path) -> Path:
    """The folder holding ``Annotations/`` for ``root``.

    ``root`` is either that folder itself or a VOCdevkit-like folder with
    exactly one child that has ``Annotations/`` (e.g. ``VOCdevkit/VOC2007``).
    With several candidates the caller must pick one; the error lists them.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"VOC root {str(root)!r} is not a directory")
    if (root / "Annotations").is_dir():
        return root
    candidates = sorted(p for p in root.iterdir() if (p / "Annotations").is_dir())
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise DatasetError(
            f"{str(root)!r} is not a PASCAL VOC folder: no Annotations/ in it or in any sub-folder"
        )
    names = ", ".join(str(p) for p in candidates)
    raise DatasetError(f"{str(root)!r} holds several VOC datasets; pass one of them: {names}")


def voc_splits(root: str | Path) -> list[str]:
    """Split names available under ``root`` (the stems of ``ImageSets/Main/*.txt``, per-class files excluded)."""
    main = resolve_voc_root(root) / "ImageSets" / "Main"
    if not main.is_dir():
        return []
    return sorted(p.stem for p in main.glob("*.txt") if not _CLASS_SPLIT_FILE.fullmatch(p.stem))


def _read_split(data_root: Path, split: str) -> list[str]:
    """Image ids of ``split`` in file order; ids that could escape the root are refused."""
    path = data_root / "ImageSets" / "Main" / f"{split}.txt"
    if not path.is_file():
        available = ", ".join(voc_splits(data_root)) or "none"
        raise DatasetError(f"no split {split!r} in {str(data_root)!r} (no {path}); available: {available}")
    ids = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        image_id = line.split()[0]  # per-class style lines carry a trailing "1" / "-1"
        _check_name(image_id, path)
        ids.append(image_id)
    return ids


def _check_name(name: str, source: Path) -> None:
    """Refuse a file name from a data file that is absolute or climbs out of its folder."""
    if not name or "/" in name or "\\" in name or name in (".", "..") or Path(name).is_absolute():
        raise DatasetError(f"{source}: refusing file name {name!r} (it must be a plain name inside the dataset)")


@dataclass(frozen=True)
class VOCObject:
    """One raw object as written in the XML (1-based inclusive coordinates)."""

    name: str
    xmin: float
    ymin: float
    xmax: float
    ymax: float
    difficult: bool


@dataclass(frozen=True)
class VOCRecord:
    """One parsed annotation file. ``size`` is ``(h, w)`` from ``<size>``, or ``None`` if absent / zero."""

    filename: str | None
    size: tuple[int, int] | None
    objects: tuple[VOCObject, ...]


def _text(element: ET.Element, tag: str, path: Path) -> str:
    child = element.find(tag)
    if child is None or child.text is None:
        raise DatasetError(f"{path}: missing <{tag}> in <{element.tag}>")
    return child.text.strip()


def parse_voc_xml(path: Path) -> VOCRecord:
    """Parse one VOC annotation file (no coordinate conversion yet)."""
    try:
        root = ET.parse(path).getroot()
    except FileNotFoundError:
        raise DatasetError(f"missing annotation file {path}") from None
    except ET.ParseError as exc:
        raise DatasetError(f"cannot parse annotation file {path}: {exc}") from None
    filename = root.findtext("filename")
    size = None
    size_el = root.find("size")
    if size_el is not None:
        try:
            width, height = int(float(_text(size_el, "width", path))), int(float(_text(size_el, "height", path)))
        except ValueError as exc:
            raise DatasetError(f"{path}: bad <size>: {exc}") from None
        if width > 0 and height > 0:  # some exporters write 0 x 0; then the image decides
            size = (height, width)
    objects = []
    for obj in root.iter("object"):
        bndbox = obj.find("bndbox")
        if bndbox is None:
            raise DatasetError(f"{path}: <object> without <bndbox>")
        try:
            coords = [float(_text(bndbox, tag, path)) for tag in ("xmin", "ymin", "xmax", "ymax")]
            difficult = bool(int(float(obj.findtext("difficult", "0").strip() or 0)))
        except ValueError as exc:
            raise DatasetError(f"{path}: bad number in <object>: {exc}") from None
        objects.append(VOCObject(_text(obj, "name", path), *coords, difficult=difficult))
    return VOCRecord(filename.strip() if filename else None, size, tuple(objects))


@functools.lru_cache(maxsize=16)
def _root_class_names(data_root: Path) -> tuple[str, ...]:
    """Sorted object names over all files of all splits of ``data_root`` (cached per root)."""
    ids: set[str] = set()
    for split in voc_splits(data_root):
        ids.update(_read_split(data_root, split))
    names: set[str] = set()
    for image_id in ids:
        path = data_root / "Annotations" / f"{image_id}.xml"
        names.update(o.name for o in parse_voc_xml(path).objects)
    return tuple(sorted(names))


class VOCDataset(DetectionDataset):
    """A split of a PASCAL VOC style dataset; annotations parsed once, at construction.

    Args:
        root: folder with ``Annotations/`` etc., or a folder with exactly one such child.
        split: name of a file in ``ImageSets/Main`` (``train``, ``trainval``, ``test`` ...).
        transforms: joint transform applied in ``__getitem__``.
        class_names: fixed class order (``BACKGROUND`` first or omitted); objects of
            other classes are then dropped with a warning. Default: see module docstring.

    ``image_id`` of sample ``i`` is ``i``, its position in the split file.
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        transforms: Transform | None = None,
        class_names: Sequence[str] | None = None,
    ) -> None:
        super().__init__(transforms)
        self.root = resolve_voc_root(root)
        self.split = split
        self.name = f"voc:{self.root.name}/{split}"
        self.ids = _read_split(self.root, split)
        if class_names is None:
            names = _root_class_names(self.root)
        else:
            names = tuple(n for n in class_names if n != BACKGROUND)
        self.class_names = (BACKGROUND, *names)
        label_of = {name: k for k, name in enumerate(self.class_names) if k > 0}
        self._image_dir = self.root / "JPEGImages"
        self._image_paths: list[Path] = []
        self._sizes: list[tuple[int, int] | None] = []
        self._boxes: list[np.ndarray] = []
        self._labels: list[np.ndarray] = []
        self._difficult: list[np.ndarray] = []
        unknown: dict[str, int] = {}
        for image_id in self.ids:
            xml_path = self.root / "Annotations" / f"{image_id}.xml"
            record = parse_voc_xml(xml_path)
            self._image_paths.append(self._image_path(image_id, record, xml_path))
            self._sizes.append(record.size)
            boxes, labels, difficult = [], [], []
            for obj in record.objects:
                if obj.name not in label_of:
                    unknown[obj.name] = unknown.get(obj.name, 0) + 1
                    continue
                box = self._convert_box(obj, record.size, xml_path)
                if box is not None:
                    boxes.append(box)
                    labels.append(label_of[obj.name])
                    difficult.append(obj.difficult)
            self._boxes.append(np.asarray(boxes, dtype=np.float32).reshape(-1, 4))
            self._labels.append(np.asarray(labels, dtype=np.int64))
            self._difficult.append(np.asarray(difficult, dtype=bool))
        if unknown:
            counts = ", ".join(f"{name!r} ({n})" for name, n in sorted(unknown.items(), key=lambda kv: -kv[1]))
            log.warning("%s: dropped %d objects of classes outside class_names: %s",
                        self.name, sum(unknown.values()), counts)
        empty = [i for i, labels in zip(self.ids, self._labels) if labels.size == 0]
        if empty:  # legitimate (background-only images) but often a sign of a broken export
            log.warning("%s: %d of %d images have no (usable) objects, e.g. %s; kept as background-only images",
                        self.name, len(empty), len(self.ids), self.root / "Annotations" / f"{empty[0]}.xml")

    def _image_path(self, image_id: str, record: VOCRecord, xml_path: Path) -> Path:
        """``JPEGImages/<id>.jpg``, or the XML ``<filename>`` when only that one exists."""
        path = self._image_dir / f"{image_id}.jpg"
        if not path.exists() and record.filename:
            _check_name(record.filename, xml_path)
            alternative = self._image_dir / record.filename
            if alternative.exists():
                return alternative
        return path

    @staticmethod
    def _convert_box(obj: VOCObject, size: tuple[int, int] | None, xml_path: Path) -> list[float] | None:
        """VOC 1-based inclusive -> 0-based continuous; ``None`` (with a warning) if degenerate."""
        raw = (obj.xmin, obj.ymin, obj.xmax, obj.ymax)
        if obj.xmax <= obj.xmin or obj.ymax <= obj.ymin:
            log.warning("%s: dropping degenerate %s box (xmin, ymin, xmax, ymax) = %s", xml_path, obj.name, raw)
            return None
        x1, y1, x2, y2 = obj.xmin - 1.0, obj.ymin - 1.0, obj.xmax, obj.ymax
        if size is not None:
            height, width = size
            clipped = (max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height)))
            if clipped != (x1, y1, x2, y2):
                if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
                    log.warning(
                        "%s: dropping %s box %s lying outside the %dx%d image", xml_path, obj.name, raw, width, height
                    )
                    return None
                log.warning("%s: clipping %s box %s to the %dx%d image", xml_path, obj.name, raw, width, height)
                x1, y1, x2, y2 = clipped
        return [x1, y1, x2, y2]

    def __len__(self) -> int:
        return len(self.ids)

    def image_path(self, index: int) -> Path:
        """Path of image ``index`` on disk."""
        return self._image_paths[index]

    def load_image(self, index: int) -> np.ndarray:
        """RGB ``uint8 [H, W, 3]``; a file that cannot be read is a DatasetError naming it."""
        path = self._image_paths[index]
        image = read_rgb(path, dataset=self.name)  # rules for gray / RGBA / 16-bit / EXIF: harness.data.imageio
        size = self._sizes[index]
        if size is None:
            self._sizes[index] = image.shape[:2]
        check_size(image.shape, size, path, dataset=self.name, source="its annotation")
        return image

    def annotation(self, index: int) -> Target:
        """Target in the image-on-disk frame; decodes the image only if its XML lacks ``<size>``."""
        size = self._sizes[index]
        if size is None:
            size = self.load_image(index).shape[:2]
        return make_target(
            self._boxes[index],
            self._labels[index],
            image_id=index,
            orig_size=size,
            difficult=self._difficult[index],
        )
