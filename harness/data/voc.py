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

import functools
import logging
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePath

import numpy as np

from harness.data.base import BACKGROUND, DetectionDataset, Target, Transform, make_target
from harness.data.errors import DatasetError
from harness.data.imageio import check_size, read_rgb
from harness.data.layouts import (
    IMAGE_EXTENSIONS, first_few, fingerprint, folder_split, hash_split, is_image, tree_files,
)

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


def _number(text: str, what: str, path: Path) -> float:
    """A finite float, or a DatasetError naming the file and ``what`` (NaN / inf are as bad as ``abc``)."""
    try:
        value = float(text)
    except ValueError:
        raise DatasetError(f"{path}: bad number in {what}: {text!r}") from None
    if not math.isfinite(value):
        raise DatasetError(f"{path}: {what} is {text!r}; every number in an annotation must be finite")
    return value


def _parse_root(path: Path) -> ET.Element:
    try:
        return ET.parse(path).getroot()
    except FileNotFoundError:
        raise DatasetError(f"missing annotation file {path}") from None
    except ET.ParseError as exc:
        raise DatasetError(f"cannot parse annotation file {path}: {exc}") from None


def _record(root: ET.Element, path: Path) -> VOCRecord:
    filename = root.findtext("filename")
    size = None
    size_el = root.find("size")
    if size_el is not None:
        width = int(_number(_text(size_el, "width", path), "<size><width>", path))
        height = int(_number(_text(size_el, "height", path), "<size><height>", path))
        if width > 0 and height > 0:  # some exporters write 0 x 0; then the image decides
            size = (height, width)
    objects = []
    for k, obj in enumerate(root.iter("object"), start=1):
        bndbox = obj.find("bndbox")
        if bndbox is None:
            raise DatasetError(f"{path}: <object> without <bndbox>")
        name = _text(obj, "name", path)
        where = f"object {k} ({name})"
        coords = [_number(_text(bndbox, tag, path), f"{where} <{tag}>", path)
                  for tag in ("xmin", "ymin", "xmax", "ymax")]
        difficult = bool(int(_number(obj.findtext("difficult", "0").strip() or "0", f"{where} <difficult>", path)))
        objects.append(VOCObject(name, *coords, difficult=difficult))
    return VOCRecord(filename.strip() if filename else None, size, tuple(objects))


def parse_voc_xml(path: Path) -> VOCRecord:
    """Parse one VOC annotation file (no coordinate conversion yet).

    Raises:
        DatasetError: unparseable XML, a missing tag, or a number that is not
            a finite number (``abc``, ``nan``, ``inf``), naming the file and object.
    """
    return _record(_parse_root(path), path)


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


# ---------------------------------------------------------------- layouts other than VOC2007's

@dataclass(frozen=True)
class VOCEntry:
    """One annotation of a scanned tree: its id (path below the root, no suffix), XML, parsed record, image."""

    image_id: str
    xml: Path
    record: VOCRecord
    image: Path  # where the image is, or (when it is missing) where it was looked for first


@dataclass(frozen=True)
class VOCLayout:
    """How a ``voc:DIR`` folder is organised and split (what ``harness datasets`` reports).

    ``kind == "imagesets"``: the VOC2007 layout with ``ImageSets/Main`` split
    files, read exactly as :class:`VOCDataset` always did (``entries`` empty).
    ``kind == "scan"``: every VOC XML found below ``root``, split by folder or by
    the seeded 80 / 20 cut (``entries`` per split).
    """

    root: Path
    kind: str
    description: str
    split_rule: str
    entries: dict[str, tuple[VOCEntry, ...]]
    class_names: tuple[str, ...] = ()

    @property
    def splits(self) -> list[str]:
        return voc_splits(self.root) if self.kind == "imagesets" else sorted(self.entries)


def _classic_root(root: Path) -> Path | None:
    """The folder with ``Annotations/`` (``root`` or its one such child), ``None`` if there is none.

    Several children with ``Annotations/`` are ambiguous (``VOCdevkit`` holding
    VOC2007 and VOC2012) unless they are all split folders (``train/``, ``val/``...).
    """
    if (root / "Annotations").is_dir():
        return root
    candidates = sorted(p for p in root.iterdir() if (p / "Annotations").is_dir())
    if len(candidates) == 1:
        return candidates[0]
    if not candidates or all(folder_split(PurePath(p.name)) for p in candidates):
        return None
    names = ", ".join(str(p) for p in candidates)
    raise DatasetError(f"{str(root)!r} holds several VOC datasets; pass one of them: {names}")


def voc_layout(root: str | Path, split_seed: int = 0) -> VOCLayout:
    """Find how ``root`` holds its VOC annotations, and how it is split.

    1. ``Annotations/`` with ``ImageSets/Main/*.txt`` (in ``root`` or its one
       child): the VOC2007 layout, split files as written.
    2. Otherwise every ``*.xml`` with an ``<annotation>`` root below ``root``
       (or below the one folder with ``Annotations/``). Each XML's image is its
       ``<filename>`` beside the XML, in a ``JPEGImages/`` or ``images/`` folder
       beside the XML's folder (or an ancestor's, keeping the sub-path), else
       the XML's own name with an image extension in those places. Splits: the
       folders ``train`` / ``val`` (``valid``) / ``test`` the XMLs are in, else
       an 80 / 20 cut by file name seeded with ``split_seed``.

    The scan is cached until a file under the root changes.
    """
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"VOC root {str(root)!r} is not a directory")
    classic = _classic_root(root)
    if classic is not None and voc_splits(classic):
        return VOCLayout(classic, "imagesets", "VOC (Annotations/, JPEGImages/, ImageSets/Main/)",
                         "ImageSets/Main/<split>.txt", {})
    scan_root = classic or root
    files = tree_files(scan_root)
    return _scan(scan_root, int(split_seed), fingerprint(files))


def _image_candidates(xml: Path, name: str, root: Path) -> list[tuple[Path, str]]:
    """``(path, where)`` places an image named ``name`` may be for ``xml``, all inside ``root``."""
    folder = xml.parent
    out = [(folder / name, "beside the XML")]
    level = folder
    while level != root and root in level.parents:
        rel = folder.relative_to(level)
        for sibling in ("JPEGImages", "images", "Images"):
            out.append((level.parent / sibling / rel / name, f"{sibling}/"))
        level = level.parent
    return out


def _find_image(xml: Path, record: VOCRecord, root: Path, images: set[Path]) -> tuple[Path, str | None]:
    """The image of ``xml`` and where it was found (``None``: missing; the path is where it was looked for)."""
    names = []
    if record.filename:
        _check_name(record.filename, xml)
        names.append(record.filename)
    names += [xml.stem + ext for ext in IMAGE_EXTENSIONS] + [xml.stem + ext.upper() for ext in IMAGE_EXTENSIONS]
    first = None
    for name in names:
        for path, where in _image_candidates(xml, name, root):
            first = first or path
            if path in images:
                return path, where
    return first, None  # type: ignore[return-value]


@functools.lru_cache(maxsize=8)
def _scan(root: Path, seed: int, files_fingerprint: tuple[tuple[str, int, int], ...]) -> VOCLayout:
    files = [Path(f) for f, _, _ in files_fingerprint]
    images = {p for p in files if is_image(p)}
    found: list[tuple[str, Path, VOCRecord, Path, str | None]] = []
    not_voc = []
    for xml in (p for p in files if p.suffix.lower() == ".xml"):
        tree = _parse_root(xml)
        if tree.tag != "annotation":
            not_voc.append(xml.relative_to(root))
            continue
        record = _record(tree, xml)
        image, where = _find_image(xml, record, root, images)
        found.append((xml.relative_to(root).with_suffix("").as_posix(), xml, record, image, where))
    if not found:
        raise DatasetError(
            f"{str(root)!r} is not a PASCAL VOC folder: no Annotations/ and no VOC .xml files in it or below it"
        )
    if not_voc:
        log.warning("%s: skipped %d .xml files that are not VOC annotations (no <annotation> root): %s",
                    root, len(not_voc), first_few(not_voc))
    missing = [xml.relative_to(root) for _, xml, _, _, where in found if where is None]
    if missing:
        log.warning("%s: %d of %d XMLs name an image that is not there (looked for by <filename> and by the XML's "
                    "name beside it, in JPEGImages/ and images/): %s", root, len(missing), len(found),
                    first_few(missing))
    unnamed = sorted(p.relative_to(root) for p in images - {image for *_, image, where in found if where})
    if unnamed:
        log.warning("%s: %d images that no XML names (not used): %s", root, len(unnamed), first_few(unnamed))

    by_folder = {image_id: folder_split(PurePath(image_id).parent) for image_id, *_ in found}
    if any(by_folder.values()):
        outside = [image_id for image_id, split in by_folder.items() if split is None]
        if outside:
            log.warning("%s: %d XMLs outside the train/val/test folders are not used: %s",
                        root, len(outside), first_few(outside))
        split_of = {k: v for k, v in by_folder.items() if v is not None}
        rule = "by folder: " + ", ".join(sorted(set(split_of.values()))) + " (valid/ counts as val)"
    else:
        split_of = hash_split([image_id for image_id, *_ in found], seed)
        rule = f"80/20 train/test by file name, seed {seed} (--set data.split_seed=N draws another)"
    entries: dict[str, list[VOCEntry]] = {}
    for image_id, xml, record, image, _ in found:
        if image_id in split_of:
            entries.setdefault(split_of[image_id], []).append(VOCEntry(image_id, xml, record, image))
    places = Counter(where for *_, where in found if where)
    where_text = ", ".join(f"{where} ({n})" for where, n in places.most_common()) or "none found"
    description = f"VOC XML found below the folder: {len(found)} files; where the images are: {where_text}"
    names = tuple(sorted({o.name for *_, record, _, _ in found for o in record.objects}))
    return VOCLayout(root, "scan", description, rule, {k: tuple(v) for k, v in entries.items()}, names)


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
            self.ids = _read_split(self.root, split)
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
            names = _root_class_names(self.root) if layout.kind == "imagesets" else layout.class_names
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
