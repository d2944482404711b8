"""Dataset spec strings (what the CLI accepts) -> datasets with the harness transforms.

Spec grammar::

    synthetic                          the generated shapes dataset (default; 3 classes)
    synthetic-hard                     the harder generated benchmark (12 look-alike classes, clutter)
    voc:DIR                            PASCAL VOC layout; DIR holds Annotations/ (or one such child)
    coco:ANNOTATIONS.json[:IMAGES_DIR] COCO instances file; images default to the JSON's folder

Relative paths are taken relative to the current directory.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.data.base import DetectionDataset, Transform
from harness.data.coco import COCODataset
from harness.data.errors import DatasetError
from harness.data.synthetic import SPLITS as SYNTHETIC_SPLITS
from harness.data.synthetic import SyntheticConfig, SyntheticDataset
from harness.data.synthetic_hard import SyntheticHardConfig, SyntheticHardDataset
from harness.data.transforms import Compose, RandomHorizontalFlip, Resize
from harness.data.voc import VOCDataset, resolve_voc_root, voc_splits

KINDS = ("synthetic", "synthetic-hard", "voc", "coco")
GENERATED = ("synthetic", "synthetic-hard")  # kinds generated in memory: no path, splits train/val/test
_USAGE = "synthetic, synthetic-hard, voc:DIR, coco:ANNOTATIONS.json[:IMAGES_DIR]"


@dataclass(frozen=True)
class DatasetSpec:
    """A parsed spec. ``path`` is the VOC root or COCO JSON; ``images_dir`` is COCO only."""

    kind: str
    path: Path | None = None
    images_dir: Path | None = None

    def __str__(self) -> str:
        if self.kind in GENERATED:
            return self.kind
        text = f"{self.kind}:{self.path}"
        return f"{text}:{self.images_dir}" if self.images_dir is not None else text


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
    # coco: split at the first ".json:" so other colons in paths survive.
    json_part, images_part = rest, None
    marker = rest.lower().find(".json:")
    if marker >= 0:
        json_part, images_part = rest[: marker + 5], rest[marker + 6 :] or None
    json_path = Path(json_part)
    if not json_path.is_file():
        raise DatasetError(f"COCO annotation file {json_part!r} does not exist")
    images_dir = Path(images_part) if images_part is not None else None
    if images_dir is not None and not images_dir.is_dir():
        raise DatasetError(f"COCO images folder {images_part!r} does not exist")
    return DatasetSpec("coco", json_path, images_dir)


def available_splits(spec: str | DatasetSpec) -> list[str]:
    """Split names ``build_dataset`` accepts for ``spec`` (COCO: the 80/20 hash split)."""
    parsed = parse_dataset_spec(spec)
    if parsed.kind in GENERATED:
        return list(SYNTHETIC_SPLITS)
    if parsed.kind == "voc":
        return voc_splits(parsed.path)  # type: ignore[arg-type]
    return ["train", "test"]


def default_splits(spec: str | DatasetSpec) -> tuple[str, str]:
    """``(train_split, test_split)`` for ``spec``.

    VOC: ``trainval`` if present else ``train``; ``test`` if present else ``val``.
    """
    parsed = parse_dataset_spec(spec)
    if parsed.kind in GENERATED:
        return "train", "test"
    if parsed.kind == "coco":
        return "train", "test"
    splits = set(available_splits(parsed))
    train = next((s for s in ("trainval", "train") if s in splits), None)
    test = next((s for s in ("test", "val") if s in splits), None)
    if train is None or test is None:
        root = resolve_voc_root(parsed.path)  # type: ignore[arg-type]
        raise DatasetError(
            f"{root}: need a training split (trainval or train) and an evaluation split (test or val) "
            f"in ImageSets/Main; found: {', '.join(sorted(splits)) or 'none'}"
        )
    return train, test


def build_transforms(min_size: int, max_size: int, flip_prob: float = 0.0, seed: int = 0) -> Transform:
    """``Resize(min_size, max_size)``, then (if ``flip_prob > 0``) a flip seeded with ``seed``."""
    transforms: list[Transform] = [Resize(min_size, max_size)]
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
    synthetic_hard: SyntheticHardConfig | None = None,
) -> DetectionDataset:
    """The ``split`` of ``spec``, resized (and optionally flipped) for a detector.

    ``seed`` seeds only the flip sequence; the generated images are fixed by
    ``synthetic.seed`` (``synthetic_hard.seed``) so that runs with different
    seeds see the same data. ``None`` configs take the datasets' defaults.
    """
    parsed = parse_dataset_spec(spec)
    splits = available_splits(parsed)
    if split not in splits and not (parsed.kind == "coco" and split == "all"):
        raise DatasetError(f"no split {split!r} in {parsed}; available: {', '.join(splits) or 'none'}")
    transforms = build_transforms(min_size, max_size, flip_prob, seed)
    if parsed.kind == "synthetic":
        return SyntheticDataset(split, synthetic, transforms=transforms)
    if parsed.kind == "synthetic-hard":
        return SyntheticHardDataset(split, synthetic_hard, transforms=transforms)
    if parsed.kind == "voc":
        return VOCDataset(parsed.path, split, transforms=transforms)  # type: ignore[arg-type]
    try:
        return COCODataset(parsed.path, parsed.images_dir, transforms=transforms, split=split)  # type: ignore[arg-type]
    except DatasetError:
        raise
    except (TypeError, ValueError, KeyError, AttributeError) as err:
        # a value of the wrong type somewhere in a hand-edited JSON ("id": "seven", "images": {...})
        raise DatasetError(f"{parsed.path}: malformed COCO JSON ({type(err).__name__}: {err})") from None
