"""One VOC annotation XML file, parsed: its image name, size and objects (every number finite).

Coordinates stay as written here (1-based inclusive); :mod:`harness.data.voc` converts them.
"""
from __future__ import annotations

import logging
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from harness.data.errors import DatasetError

log = logging.getLogger(__name__)


def check_name(name: str, source: Path) -> None:
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


def parse_root(path: Path) -> ET.Element:
    try:
        return ET.parse(path).getroot()
    except FileNotFoundError:
        raise DatasetError(f"missing annotation file {path}") from None
    except ET.ParseError as exc:
        raise DatasetError(f"cannot parse annotation file {path}: {exc}") from None


def record_of(root: ET.Element, path: Path) -> VOCRecord:
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
    return record_of(parse_root(path), path)
