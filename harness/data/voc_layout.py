"""Where a VOC dataset's files are and how it splits: the VOC2007 layout (``ImageSets/Main``), or any
folder tree of VOC XML files (LabelImg's XML beside each image, ``train/ valid/ test/`` exports,
``annotations/`` + ``images/``), split by folder names or 80/20 by file name.
"""
from __future__ import annotations

import functools
import logging
import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path, PurePath

from harness.data.errors import DatasetError
from harness.data.layouts import (
    IMAGE_EXTENSIONS,
    fingerprint,
    first_few,
    folder_split,
    hash_split,
    is_image,
    tree_files,
)
from harness.data.voc_xml import (
    VOCRecord,
    check_name,
    parse_root,
    parse_voc_xml,
    record_of,
)

log = logging.getLogger(__name__)

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


def read_split(data_root: Path, split: str) -> list[str]:
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
        check_name(image_id, path)
        ids.append(image_id)
    return ids


@functools.lru_cache(maxsize=16)
def root_class_names(data_root: Path) -> tuple[str, ...]:
    """Sorted object names over all files of all splits of ``data_root`` (cached per root)."""
    ids: set[str] = set()
    for split in voc_splits(data_root):
        ids.update(read_split(data_root, split))
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


def classic_root(root: Path) -> Path | None:
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
    classic = classic_root(root)
    if classic is not None and voc_splits(classic):
        return VOCLayout(classic, "imagesets", "VOC (Annotations/, JPEGImages/, ImageSets/Main/)",
                         "ImageSets/Main/<split>.txt", {})
    scan_root = classic or root
    files = tree_files(scan_root)
    return scan_tree(scan_root, int(split_seed), fingerprint(files))


def image_candidates(xml: Path, name: str, root: Path) -> list[tuple[Path, str]]:
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


def find_image(xml: Path, record: VOCRecord, root: Path, images: set[Path]) -> tuple[Path, str | None]:
    """The image of ``xml`` and where it was found (``None``: missing; the path is where it was looked for)."""
    names = []
    if record.filename:
        check_name(record.filename, xml)
        names.append(record.filename)
    names += [xml.stem + ext for ext in IMAGE_EXTENSIONS] + [xml.stem + ext.upper() for ext in IMAGE_EXTENSIONS]
    first = None
    for name in names:
        for path, where in image_candidates(xml, name, root):
            first = first or path
            if path in images:
                return path, where
    return first, None  # type: ignore[return-value]


@functools.lru_cache(maxsize=8)
def scan_tree(root: Path, seed: int, files_fingerprint: tuple[tuple[str, int, int], ...]) -> VOCLayout:
    files = [Path(f) for f, _, _ in files_fingerprint]
    images = {p for p in files if is_image(p)}
    found: list[tuple[str, Path, VOCRecord, Path, str | None]] = []
    not_voc = []
    for xml in (p for p in files if p.suffix.lower() == ".xml"):
        tree = parse_root(xml)
        if tree.tag != "annotation":
            not_voc.append(xml.relative_to(root))
            continue
        record = record_of(tree, xml)
        image, where = find_image(xml, record, root, images)
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


