"""PASCAL VOC loader: the VOC2007 layout, and any folder tree of VOC XML files.

The VOC2007 layout (``Annotations/*.xml``, ``JPEGImages/*.jpg``,
``ImageSets/Main/<split>.txt``) is read as written. Without ``ImageSets/Main``
the XML files are found anywhere below the folder (LabelImg's XML beside each
image, ``train/ valid/ test/`` exports, ``annotations/`` + ``images/``); see
:func:`voc_layout` for how images are found and how such a tree is split.

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

Every number (coordinates, ``<size>``, ``<difficult>``) must be a finite number:
``abc``, ``nan`` and ``inf`` are each an error naming the file and the object.

Label mapping: unless ``class_names`` is given, classes are the sorted set of
object names over *every* annotation listed in *any* ``ImageSets/Main``
split file of the root (scanned trees: in every XML found), so all splits of one root share one mapping (a class
absent from the test split still gets the same label as in training).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
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
from harness.data.voc_layout import (
    read_split,
    root_class_names,
    voc_layout,
)
from harness.data.voc_xml import VOCObject, VOCRecord, check_name, parse_voc_xml

log = logging.getLogger(__name__)


class VOCDataset(DetectionDataset):
    """A split of a PASCAL VOC style dataset; annotations parsed once, at construction.

    Args:
        root: folder with ``Annotations/`` etc., a folder with exactly one such child,
            or any folder tree of VOC XML files (see :func:`voc_layout`).
        split: name of a file in ``ImageSets/Main`` (``train``, ``trainval``, ``test`` ...),
            or of a split of the scanned tree (``train``, ``val``, ``test``).
        transforms: joint transform applied in ``__getitem__``.
        class_names: fixed class order (``BACKGROUND`` first or omitted); objects of
            other classes are then dropped with a warning. Default: see module docstring.
        split_seed: seed of the 80 / 20 split of a tree with neither split files nor split folders.

    ``image_id`` of sample ``i`` is ``i``, its position in the split file (scanned
    trees: in the split's sorted file names).
    """

    def __init__(
        self,
        root: str | Path,
        split: str,
        transforms: Transform | None = None,
        class_names: Sequence[str] | None = None,
        split_seed: int = 0,
    ) -> None:
        super().__init__(transforms)
        layout = voc_layout(root, split_seed)
        self.root = layout.root
        self.split = split
        self.name = f"voc:{self.root.name}/{split}"
        self.layout, self.split_rule = layout.description, layout.split_rule
        if layout.kind == "imagesets":
            self.ids = read_split(self.root, split)
            xmls = [self.root / "Annotations" / f"{image_id}.xml" for image_id in self.ids]
            records = [parse_voc_xml(xml) for xml in xmls]
            self._image_dir = self.root / "JPEGImages"
            image_paths = [self._image_path(i, r, x) for i, r, x in zip(self.ids, records, xmls)]
        else:
            if split not in layout.entries:
                raise DatasetError(f"no split {split!r} in {str(self.root)!r} ({layout.split_rule}); "
                                   f"available: {', '.join(layout.splits) or 'none'}")
            chosen = layout.entries[split]
            self.ids = [e.image_id for e in chosen]
            xmls, records, image_paths = [e.xml for e in chosen], [e.record for e in chosen], [e.image for e in chosen]
        if class_names is None:
            names = root_class_names(self.root) if layout.kind == "imagesets" else layout.class_names
        elif isinstance(class_names, str):
            raise TypeError("class_names must be a sequence of names, not one string")
        else:
            names = tuple(n for n in class_names if n != BACKGROUND)
        self.class_names = (BACKGROUND, *names)
        label_of = {name: k for k, name in enumerate(self.class_names) if k > 0}
        self._image_paths: list[Path] = image_paths
        self._sizes: list[tuple[int, int] | None] = []
        self._boxes: list[np.ndarray] = []
        self._labels: list[np.ndarray] = []
        self._difficult: list[np.ndarray] = []
        unknown: dict[str, int] = {}
        for xml_path, record in zip(xmls, records):
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
                        self.name, len(empty), len(self.ids), xmls[self.ids.index(empty[0])])

    def _image_path(self, image_id: str, record: VOCRecord, xml_path: Path) -> Path:
        """``JPEGImages/<id>.jpg``, or the XML ``<filename>`` when only that one exists."""
        path = self._image_dir / f"{image_id}.jpg"
        if not path.exists() and record.filename:
            check_name(record.filename, xml_path)
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
