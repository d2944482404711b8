"""YOLO text labels (the ultralytics layout): ``yolo:DIR`` or ``yolo:data.yaml``.

Layouts, tried in this order:

1. a ``data.yaml`` (the file given, or ``DIR/data.yaml``): its ``train`` /
   ``val`` / ``test`` entries name image folders (one or a list), relative to
   its ``path:`` (else to the YAML's folder; Roboflow's ``../train/images`` is
   also tried without the ``../``);
2. ``DIR/images/{train,val,test}/`` (``valid`` counts as ``val``);
3. ``DIR/{train,val,test}/images/``;
4. ``DIR/images/`` (or ``DIR`` itself) without split folders: split 80 / 20 by
   file name with ``data.split_seed`` (see :func:`harness.data.layouts.hash_split`).

Each image's labels are in the ``.txt`` of the same name in the ``labels``
folder that mirrors its ``images`` folder (``images/train/a.jpg`` ->
``labels/train/a.txt``), or beside the image when its path has no ``images``
folder. One line per box: ``class cx cy w h``, centre and size normalised by the
image's width and height. No label file, or an empty one: a background image.

Class names: ``--set data.class_names=a,b`` (``class_names``) if given, else
the YAML's ``names:`` (a list, or a ``{0: a, 1: b}`` mapping), else
``classes.txt`` (one name per line) in ``DIR`` or ``DIR/labels``. Class id
``k`` becomes label ``k + 1``.

Conversion, once, here: the image's size is read from its file header, and
``x1 = (cx - w/2) * W``, ``x2 = (cx + w/2) * W`` (same for y), the harness frame
(absolute pixels, continuous, 0-based). Bad lines get VOC's treatment of bad
boxes, each naming the file and line:

- a line without exactly 5 fields, a field that is not a number, NaN or
  infinity, or a class id that is not a whole number: an error;
- a box with ``w <= 0`` or ``h <= 0``: dropped with a warning;
- a box reaching outside the image (a value outside ``[0, 1]``): clipped with a
  warning, or dropped with a warning when nothing is left;
- a class id outside ``0 .. K-1``: dropped; one warning lists the ids with
  counts and the first file and line of each.

EXIF orientation is ignored here as for every source (:mod:`harness.data.imageio`);
ultralytics instead labels such photos in their rotated view, so images with an
orientation tag are listed in a warning.
"""
from __future__ import annotations

import functools
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath
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
from harness.data.imageio import check_size, image_header, read_rgb
from harness.data.layouts import (
    fingerprint,
    first_few,
    folder_split,
    hash_split,
    is_image,
    tree_files,
)
from harness.data.yolo_yaml import names_from_yaml, parse_data_yaml

log = logging.getLogger(__name__)

YAML_NAMES = ("data.yaml", "data.yml", "dataset.yaml")
_SPLIT_KEYS = {"train": "train", "val": "val", "valid": "val", "test": "test"}


# ---------------------------------------------------------------- the YAML subset data.yaml files use

@dataclass(frozen=True)
class YOLOLayout:
    """Where the images of each split are, and the class names (what ``harness datasets`` reports)."""

    root: Path
    description: str
    split_rule: str
    splits: dict[str, tuple[Path, ...]]  # split -> image files
    class_names: tuple[str, ...]
    names_from: str


def label_path(image: Path) -> Path:
    """``.../images/x/a.jpg`` -> ``.../labels/x/a.txt`` (the last ``images`` folder); else ``a.txt`` beside it."""
    parts = list(image.parts)
    for i in range(len(parts) - 2, -1, -1):
        if parts[i] == "images":
            parts[i] = "labels"
            return Path(*parts).with_suffix(".txt")
    return image.with_suffix(".txt")


def _yaml_folders(value: Any, key: str, base: Path, yaml_dir: Path, yaml_path: Path) -> list[Path]:
    folders = []
    for item in value if isinstance(value, list) else [value]:
        item = str(item)
        tries = [base / item, yaml_dir / item]
        stripped = item
        while stripped.startswith("../"):
            stripped = stripped[3:]
            tries.append(yaml_dir / stripped)
        folder = next((p for p in tries if p.is_dir()), None)
        if folder is None:
            if item.lower().endswith(".txt") and any(p.is_file() for p in tries):
                raise DatasetError(f"{yaml_path}: {key}: {item!r} is a list file; list the image folders instead")
            raise DatasetError(f"{yaml_path}: {key}: image folder {item!r} does not exist (looked in {base})")
        folders.append(folder)
    return folders


def yolo_layout(path: str | Path, split_seed: int = 0, class_names: Sequence[str] = ()) -> YOLOLayout:
    """Find the splits and class names of ``yolo:PATH`` (see the module docstring); cached until a file changes."""
    path = Path(path)
    if path.is_file():
        if path.suffix.lower() not in (".yaml", ".yml"):
            raise DatasetError(f"yolo: expected a folder or a data.yaml, got the file {str(path)!r}")
        yaml_path, root = path, path.parent
    elif path.is_dir():
        root = path
        yaml_path = next((path / n for n in YAML_NAMES if (path / n).is_file()), None)
    else:
        raise DatasetError(f"YOLO dataset {str(path)!r} does not exist")
    return _layout(root, yaml_path, int(split_seed), tuple(n for n in class_names if n != BACKGROUND),
                   fingerprint(tree_files(root)))


@functools.lru_cache(maxsize=8)
def _layout(root: Path, yaml_path: Path | None, seed: int, explicit: tuple[str, ...],
            _fingerprint: tuple[tuple[str, int, int], ...]) -> YOLOLayout:
    folders: dict[str, list[Path]] = {}
    yaml: dict[str, Any] = {}
    hashed = False
    if yaml_path is not None:
        yaml = parse_data_yaml(yaml_path)
        base = yaml_path.parent / str(yaml.get("path") or ".")
        if not base.is_dir():
            base = yaml_path.parent
        for key, split in _SPLIT_KEYS.items():
            if yaml.get(key):
                folders.setdefault(split, []).extend(_yaml_folders(yaml[key], key, base, yaml_path.parent, yaml_path))
        if not folders:
            raise DatasetError(f"{yaml_path}: names no image folders (train: / val: / test:)")
        description = f"YOLO, {yaml_path.name}: " + ", ".join(
            f"{s} = {', '.join(str(f.relative_to(root)) if root in f.parents or f == root else str(f) for f in fs)}"
            for s, fs in sorted(folders.items()))
        rule = f"by {yaml_path.name}"
    else:
        images_dir = root / "images"
        for sub in sorted(images_dir.iterdir()) if images_dir.is_dir() else []:
            split = folder_split(PurePath(sub.name))
            if sub.is_dir() and split:
                folders.setdefault(split, []).append(sub)
        description = "YOLO: images/<split>/ with labels/<split>/"
        if not folders:
            for sub in sorted(root.iterdir()):
                split = folder_split(PurePath(sub.name))
                if sub.is_dir() and split and (sub / "images").is_dir():
                    folders.setdefault(split, []).append(sub / "images")
            description = "YOLO: <split>/images/ with <split>/labels/"
        if not folders:
            folders = {"all": [images_dir if images_dir.is_dir() else root]}
            hashed = True
            description = ("YOLO: images/ with labels/" if images_dir.is_dir()
                           else "YOLO: images with .txt labels beside them")
        rule = "by folder: " + ", ".join(sorted(folders)) + " (valid/ counts as val)"

    splits: dict[str, list[Path]] = {}
    for split, dirs in folders.items():
        files = sorted({p for d in dirs for p in tree_files(d) if is_image(p)})
        splits[split] = files
    if not any(splits.values()):
        raise DatasetError(f"{root}: no images found for the YOLO dataset ({description})")
    if hashed:
        files = splits.pop("all")
        side = hash_split([p.relative_to(root).as_posix() for p in files], seed)
        for p in files:
            splits.setdefault(side[p.relative_to(root).as_posix()], []).append(p)
        rule = f"80/20 train/test by file name, seed {seed} (--set data.split_seed=N draws another)"

    used_labels = {label_path(p) for files in splits.values() for p in files}
    orphans = sorted(p.relative_to(root) for p in tree_files(root)
                     if p.suffix == ".txt" and p.name != "classes.txt" and p not in used_labels
                     and "labels" in p.relative_to(root).parts)
    if orphans:
        log.warning("%s: %d label files have no image (not used): %s", root, len(orphans), first_few(orphans))

    if explicit:
        names, names_from = explicit, "data.class_names"
    elif yaml.get("names"):
        names, names_from = names_from_yaml(yaml["names"], yaml_path), yaml_path.name  # type: ignore[arg-type]
    else:
        found = next((p for p in (root / "classes.txt", root / "labels" / "classes.txt") if p.is_file()), None)
        if found is None:
            raise DatasetError(f"{root}: no class names for the YOLO labels: give them in data.yaml (names:), "
                               "in classes.txt (one per line), or with --set data.class_names=a,b,c")
        names = tuple(line.strip() for line in found.read_text(encoding="utf-8-sig").splitlines() if line.strip())
        names_from = str(found.relative_to(root))
    if yaml.get("nc") not in (None, "") and str(yaml["nc"]).strip() != str(len(names)):
        log.warning("%s: nc: %s but %d class names (%s); using the names",
                    yaml_path, yaml["nc"], len(names), names_from)
    return YOLOLayout(root, description, rule, {k: tuple(v) for k, v in splits.items()}, tuple(names), names_from)


# ---------------------------------------------------------------- one label file


def parse_label_file(path: Path, size: tuple[int, int], num_classes: int,
                     unknown: dict[int, list[str]]) -> tuple[np.ndarray, np.ndarray]:
    """``boxes [N, 4]`` (absolute xyxy) and class ids ``[N]`` of one label file for an image of ``size`` (h, w).

    Boxes of class ids outside ``0..num_classes-1`` are left out and recorded in
    ``unknown[id]`` as ``"file:line"``. Errors and warnings: see the module docstring.
    """
    height, width = size
    boxes, ids = [], []
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.int64)
    except (OSError, UnicodeDecodeError) as err:
        raise DatasetError(f"cannot read label file {path}: {err}") from None
    for lineno, line in enumerate(text.splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        where = f"{path}:{lineno}"
        if len(fields) != 5:
            raise DatasetError(f"{where}: expected 5 fields 'class cx cy w h', got {len(fields)}: {line.strip()!r}")
        try:
            values = [float(v) for v in fields]
        except ValueError:
            raise DatasetError(f"{where}: not a number in {line.strip()!r}") from None
        if not all(math.isfinite(v) for v in values):
            raise DatasetError(f"{where}: {line.strip()!r} holds NaN or infinity; every number must be finite")
        cls, cx, cy, w, h = values
        if not cls.is_integer():
            raise DatasetError(f"{where}: class id {fields[0]!r} is not a whole number")
        if not 0 <= cls < num_classes:
            unknown.setdefault(int(cls), []).append(where)
            continue
        if w <= 0 or h <= 0:
            log.warning("%s: dropping degenerate box %s (w and h must be > 0)", where, line.strip())
            continue
        box = ((cx - w / 2) * width, (cy - h / 2) * height, (cx + w / 2) * width, (cy + h / 2) * height)
        clipped = (max(box[0], 0.0), max(box[1], 0.0), min(box[2], float(width)), min(box[3], float(height)))
        if clipped != box:
            normalised = all(0 <= v <= 1 for v in values[1:])
            hint = "" if normalised else " (values outside [0, 1]; YOLO labels are normalised)"
            if clipped[2] <= clipped[0] or clipped[3] <= clipped[1]:
                log.warning("%s: dropping box %s lying outside the %dx%d image%s",
                            where, line.strip(), width, height, hint)
                continue
            log.warning("%s: clipping box %s to the %dx%d image%s", where, line.strip(), width, height, hint)
        boxes.append(clipped)
        ids.append(int(cls))
    return np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(ids, np.int64)


class YOLODataset(DetectionDataset):
    """A split of a YOLO-labelled dataset; labels read and converted once, at construction.

    Args:
        path: the dataset folder or its ``data.yaml``.
        split: ``train`` / ``val`` / ``test`` (those present).
        transforms: joint transform applied in ``__getitem__``.
        class_names: the class names (overrides ``data.yaml`` / ``classes.txt``).
        split_seed: seed of the 80 / 20 split when the images are not in split folders.

    ``image_id`` of sample ``i`` is ``i``, its position in the split's sorted file names.
    """

    def __init__(self, path: str | Path, split: str, transforms: Transform | None = None,
                 class_names: Sequence[str] = (), split_seed: int = 0) -> None:
        super().__init__(transforms)
        layout = yolo_layout(path, split_seed, class_names)
        if split not in layout.splits:
            raise DatasetError(f"no split {split!r} in {layout.root} ({layout.split_rule}); "
                               f"available: {', '.join(sorted(layout.splits))}")
        self.root, self.split = layout.root, split
        self.name = f"yolo:{layout.root.name}/{split}"
        self.layout = f"{layout.description}; classes from {layout.names_from}"
        self.split_rule = layout.split_rule
        self.class_names = (BACKGROUND, *layout.class_names)
        self._files = list(layout.splits[split])
        self._sizes: list[tuple[int, int]] = []
        self._boxes: list[np.ndarray] = []
        self._labels: list[np.ndarray] = []
        unknown: dict[int, list[str]] = {}
        no_file, rotated = [], []
        for image in self._files:
            height, width, orientation = image_header(image, dataset=self.name)
            size = (height, width)
            if orientation != 1:
                rotated.append(image)
            labels = label_path(image)
            if not labels.is_file():
                no_file.append(image)
            boxes, ids = parse_label_file(labels, size, len(layout.class_names), unknown)
            self._sizes.append(size)
            self._boxes.append(boxes)
            self._labels.append(ids + 1)
        if rotated:  # ultralytics labels such photos in the rotated view; the harness uses the stored grid
            log.warning("%s: %d images carry an EXIF orientation tag, e.g. %s; their labels are applied to the stored "
                        "pixel grid (as VOC and COCO boxes are), not the rotated view ultralytics shows: "
                        "re-export them upright (auto-orient) if the boxes were drawn on the rotated view",
                        self.name, len(rotated), first_few([p.name for p in rotated]))
        if unknown:
            counts = ", ".join(f"{k} ({len(v)}, first at {v[0]})" for k, v in sorted(unknown.items()))
            log.warning("%s: dropped %d boxes with class ids outside 0..%d (%d names from %s): %s", self.name,
                        sum(len(v) for v in unknown.values()), len(layout.class_names) - 1,
                        len(layout.class_names), layout.names_from, counts)
        empty = [p for p, labels in zip(self._files, self._labels) if labels.size == 0]
        if empty:
            log.warning("%s: %d of %d images have no (usable) boxes (%d without a label file), e.g. %s; "
                        "kept as background-only images", self.name, len(empty), len(self._files), len(no_file),
                        first_few([p.relative_to(self.root) if self.root in p.parents else p for p in empty]))

    def __len__(self) -> int:
        return len(self._files)

    def image_path(self, index: int) -> Path:
        """Path of image ``index`` on disk."""
        return self._files[index]

    def load_image(self, index: int) -> np.ndarray:
        """RGB ``uint8 [H, W, 3]``; a file that cannot be read is a DatasetError naming it."""
        path = self._files[index]
        image = read_rgb(path, dataset=self.name)
        check_size(image.shape, self._sizes[index], path, dataset=self.name, source="its header")
        return image

    def annotation(self, index: int) -> Target:
        """Target in the image-on-disk frame (absolute xyxy pixels)."""
        return make_target(self._boxes[index], self._labels[index], image_id=index, orig_size=self._sizes[index])
