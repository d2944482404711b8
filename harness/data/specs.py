"""Dataset spec strings (what the CLI accepts) -> datasets with the harness transforms.

Spec grammar::

    synthetic                          the generated shapes dataset (default; 3 classes)
    synthetic-hard                     the harder generated benchmark (12 look-alike classes, clutter)
    voc:DIR                            PASCAL VOC: the VOC2007 layout, or any folder tree of VOC XML files
    coco:ANNOTATIONS.json[:IMAGES_DIR] COCO instances file; images default to the JSON's folder
    coco:TRAIN.json,TEST.json[:IMAGES] COCO in two files: train from the first, test from the second
                                       (IMAGES: one folder, or one per file: TRAIN_DIR,TEST_DIR)
    yolo:DIR | yolo:data.yaml          YOLO text labels, the ultralytics layout (harness.data.yolo)

Relative paths are taken relative to the current directory.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from harness.data import scene_cache
from harness.data.base import DetectionDataset, Transform
from harness.data.coco import COCODataset
from harness.data.errors import DatasetError
from harness.data.synthetic import SPLITS as SYNTHETIC_SPLITS
from harness.data.synthetic import SyntheticConfig, SyntheticDataset
from harness.data.synthetic_hard import SyntheticHardConfig, SyntheticHardDataset
from harness.data.transforms import (
    Compose,
    RandomHorizontalFlip,
    RandomScaleResize,
    Resize,
)
from harness.data.voc import VOCDataset
from harness.data.voc_layout import voc_layout
from harness.data.yolo import YOLODataset, yolo_layout

KINDS = ("synthetic", "synthetic-hard", "voc", "coco", "yolo")
GENERATED = ("synthetic", "synthetic-hard")  # generated kinds (kept in cache/data once drawn): splits train/val/test
_USAGE = ("synthetic, synthetic-hard, voc:DIR, coco:ANNOTATIONS.json[:IMAGES_DIR], "
          "coco:TRAIN.json,TEST.json[:IMAGES], yolo:DIR")
_JSON_LIST = re.compile(r"(?<=\.json),", re.IGNORECASE)


@dataclass(frozen=True)
class DatasetSpec:
    """A parsed spec. ``path`` is the VOC root, YOLO folder / YAML or (first) COCO JSON.

    COCO only: ``images_dir`` (one folder for every file), ``test_path`` (the
    second JSON: the test split) and ``test_images_dir`` (its own images folder).
    """

    kind: str
    path: Path | None = None
    images_dir: Path | None = None
    test_path: Path | None = None
    test_images_dir: Path | None = None

    def __str__(self) -> str:
        if self.kind in GENERATED:
            return self.kind
        text = f"{self.kind}:{self.path}" + (f",{self.test_path}" if self.test_path is not None else "")
        if self.test_images_dir is not None:
            return f"{text}:{self.images_dir},{self.test_images_dir}"
        return f"{text}:{self.images_dir}" if self.images_dir is not None else text


def dataset_options(data: object) -> dict[str, object]:
    """The ``build_dataset`` keywords a ``DataConfig`` sets beyond the sizes and ``synthetic``: ``split_seed``,
    ``class_names``, ``synthetic_hard``."""
    return {"split_seed": getattr(data, "split_seed", 0), "class_names": tuple(getattr(data, "class_names", ())),
            "synthetic_hard": getattr(data, "synthetic_hard", None)}


def parse_dataset_spec(spec: str | DatasetSpec) -> DatasetSpec:
    """Parse and check a spec string; every path it names must exist.

    Raises:
        DatasetError: unknown kind (the message lists the kinds), a missing
            path (named), or a malformed spec.
    """
    if isinstance(spec, DatasetSpec):
        return spec
    text = spec.strip()
    kind, sep, rest = text.partition(":")
    kind = kind.lower()
    if kind not in KINDS:
        raise DatasetError(f"unknown dataset kind {kind!r} in {spec!r}; expected one of: {_USAGE}")
    if kind in GENERATED:
        if sep:
            raise DatasetError(f"{kind!r} takes no argument, got {spec!r} (its size is set by the config)")
        return DatasetSpec(kind)
    if not rest:
        raise DatasetError(f"{kind!r} needs a path, e.g. {_USAGE}")
    if kind == "voc":
        root = Path(rest)
        if not root.exists():
            raise DatasetError(f"VOC folder {rest!r} does not exist")
        return DatasetSpec("voc", root)
    if kind == "yolo":
        path = Path(rest)
        if not path.exists():
            raise DatasetError(f"YOLO dataset {rest!r} does not exist")
        return DatasetSpec("yolo", path)
    # coco: split at the first ".json:" so other colons in paths survive.
    json_part, images_part = rest, None
    marker = rest.lower().find(".json:")
    if marker >= 0:
        json_part, images_part = rest[: marker + 5], rest[marker + 6 :] or None
    json_paths = [Path(p) for p in _JSON_LIST.split(json_part)]
    if len(json_paths) > 2:
        raise DatasetError(f"coco: takes one JSON file, or two (train,test), got {len(json_paths)} in {spec!r}")
    for json_path in json_paths:
        if not json_path.is_file():
            raise DatasetError(f"COCO annotation file {str(json_path)!r} does not exist")
    folders: list[Path | None] = [None]
    if images_part is not None:
        folders = [Path(images_part)]
        if not folders[0].is_dir() and len(json_paths) == 2 and "," in images_part:
            folders = [Path(p) for p in images_part.split(",", 1)]  # one images folder per JSON
        for folder in folders:
            if not folder.is_dir():  # type: ignore[union-attr]
                raise DatasetError(f"COCO images folder {str(folder)!r} does not exist")
    if len(json_paths) == 1:
        return DatasetSpec("coco", json_paths[0], folders[0])
    return DatasetSpec("coco", json_paths[0], folders[0], json_paths[1], folders[1] if len(folders) == 2 else None)


def available_splits(
    spec: str | DatasetSpec, *, split_seed: int = 0, class_names: Sequence[str] = (),
    synthetic_hard: SyntheticHardConfig | None = None,  # not needed for the split names: one options dict serves all
) -> list[str]:
    """Split names ``build_dataset`` accepts for ``spec`` (COCO: the 80/20 hash split, or one per file)."""
    parsed = parse_dataset_spec(spec)
    if parsed.kind in GENERATED:
        return list(SYNTHETIC_SPLITS)
    if parsed.kind == "voc":
        return voc_layout(parsed.path, split_seed).splits  # type: ignore[arg-type]
    if parsed.kind == "yolo":
        return sorted(yolo_layout(parsed.path, split_seed, class_names).splits)  # type: ignore[arg-type]
    return ["train", "test"]


def default_splits(
    spec: str | DatasetSpec, *, split_seed: int = 0, class_names: Sequence[str] = (),
    synthetic_hard: SyntheticHardConfig | None = None,  # not needed for the split names: one options dict serves all
) -> tuple[str, str]:
    """``(train_split, test_split)`` for ``spec``.

    VOC and YOLO: ``trainval`` if present else ``train``; ``test`` if present else ``val``.
    """
    parsed = parse_dataset_spec(spec)
    if parsed.kind in GENERATED:
        return "train", "test"
    if parsed.kind == "coco":
        return "train", "test"
    splits = set(available_splits(parsed, split_seed=split_seed, class_names=class_names))
    train = next((s for s in ("trainval", "train") if s in splits), None)
    test = next((s for s in ("test", "val") if s in splits), None)
    if train is None or test is None:
        if parsed.kind == "voc":
            layout = voc_layout(parsed.path, split_seed)  # type: ignore[arg-type]
            where, rule = layout.root, layout.split_rule
        else:
            yolo = yolo_layout(parsed.path, split_seed, class_names)  # type: ignore[arg-type]
            where, rule = yolo.root, yolo.split_rule
        raise DatasetError(
            f"{where}: need a training split (trainval or train) and an evaluation split (test or val) "
            f"({rule}); found: {', '.join(sorted(splits)) or 'none'}"
        )
    return train, test


def build_transforms(min_size: int, max_size: int, flip_prob: float = 0.0, seed: int = 0,
                     scales: tuple[int, ...] = ()) -> Transform:
    """``Resize(min_size, max_size)`` (or, with two or more ``scales``, a shorter side drawn from them per
    image: multi-scale training), then (if ``flip_prob > 0``) a flip seeded with ``seed``."""
    transforms: list[Transform] = [RandomScaleResize(scales, max_size, seed) if len(scales) > 1
                                   else Resize(min_size, max_size)]
    if flip_prob > 0:
        transforms.append(RandomHorizontalFlip(flip_prob, seed=seed))
    return Compose(transforms)


def build_dataset(
    spec: str | DatasetSpec,
    split: str,
    *,
    min_size: int,
    max_size: int,
    flip_prob: float = 0.0,
    seed: int = 0,
    synthetic: SyntheticConfig | None = None,
    split_seed: int = 0,
    class_names: Sequence[str] = (),
    synthetic_hard: SyntheticHardConfig | None = None,
) -> DetectionDataset:
    """The ``split`` of ``spec``, resized (and optionally flipped) for a detector.

    ``seed`` seeds only the flip sequence; the generated images are fixed by
    ``synthetic.seed`` (``synthetic_hard.seed``) so that runs with different
    seeds see the same data (``None`` configs take the datasets' defaults).
    ``split_seed`` seeds the 80/20 split of VOC and YOLO folders that have no
    split files or folders; ``class_names`` (``data.class_names``) fixes the
    classes of VOC (others dropped) and names YOLO's class ids. COCO's categories
    name its classes, so ``class_names`` is refused there.
    """
    parsed = parse_dataset_spec(spec)
    class_names = tuple(class_names or ())
    if class_names and parsed.kind in ("coco", *GENERATED):
        raise DatasetError(f"data.class_names is for VOC and YOLO folders; {parsed.kind} names its own classes")
    splits = available_splits(parsed, split_seed=split_seed, class_names=class_names)
    if split not in splits and not (parsed.kind == "coco" and split == "all" and parsed.test_path is None):
        raise DatasetError(f"no split {split!r} in {parsed}; available: {', '.join(splits) or 'none'}")
    transforms = build_transforms(min_size, max_size, flip_prob, seed)
    if parsed.kind == "synthetic":
        return SyntheticDataset(split, synthetic, transforms=transforms, disk_cache=scene_cache.cache_root())
    if parsed.kind == "synthetic-hard":
        return SyntheticHardDataset(split, synthetic_hard, transforms=transforms, disk_cache=scene_cache.cache_root())
    if parsed.kind == "voc":
        return VOCDataset(parsed.path, split, transforms=transforms,  # type: ignore[arg-type]
                          class_names=class_names or None, split_seed=split_seed)
    if parsed.kind == "yolo":
        return YOLODataset(parsed.path, split, transforms=transforms,  # type: ignore[arg-type]
                           class_names=class_names, split_seed=split_seed)
    try:
        if parsed.test_path is not None:
            return _coco_pair(parsed, split, transforms)
        return COCODataset(parsed.path, parsed.images_dir, transforms=transforms, split=split)  # type: ignore[arg-type]
    except DatasetError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError) as err:
        # a value of the wrong type somewhere in a hand-edited JSON ("id": "seven", "images": {...})
        raise DatasetError(f"{parsed.path}: malformed COCO JSON ({type(err).__name__}: {err})") from None


def _coco_pair(parsed: DatasetSpec, split: str, transforms: Transform) -> COCODataset:
    """``train``: every image of the first JSON; ``test``: every image of the second.

    Only the chosen file is read. The two must list the same categories; a run
    checks that its train and test sets agree on the class list before training.
    """
    path, images = (parsed.path, parsed.images_dir) if split == "train" else (
        parsed.test_path, parsed.test_images_dir or parsed.images_dir)
    dataset = COCODataset(path, images, transforms=transforms, split="all")  # type: ignore[arg-type]
    dataset.split = split
    dataset.name = f"coco:{path.stem}/{split}"  # type: ignore[union-attr]
    train_name, test_name = parsed.path.name, parsed.test_path.name  # type: ignore[union-attr]
    dataset.split_rule = f"train = {train_name} (all of it), test = {test_name} (all of it)"
    return dataset
