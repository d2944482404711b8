"""Data layer: one sample contract (:mod:`.base`), three sources, the paper transforms.

Sources: :class:`SyntheticDataset` (default, generated, needs nothing on disk),
:class:`SyntheticHardDataset` (``synthetic-hard``: the harder generated benchmark),
:class:`VOCDataset` (PASCAL VOC XML, any folder layout), :class:`COCODataset`
(COCO JSON, one file or a train and a test file) and :class:`YOLODataset`
(YOLO text labels, the ultralytics layout).
The CLI goes through the spec functions: ``parse_dataset_spec``,
``available_splits``, ``default_splits``, ``build_dataset``, and
``dataset_stats`` / ``format_stats`` / ``stats_rows`` for ``harness datasets``.
"""
from harness.data.base import (
    BACKGROUND,
    BOX_KEYS,
    DetectionDataset,
    Target,
    Transform,
    check_target,
    collate,
    image_to_tensor,
    make_target,
    training_target,
)
from harness.data.coco import COCODataset
from harness.data.errors import DatasetError
from harness.data.specs import (
    KINDS,
    DatasetSpec,
    available_splits,
    build_dataset,
    build_transforms,
    dataset_options,
    default_splits,
    parse_dataset_spec,
)
from harness.data.stats import dataset_stats, format_stats, printable, stats_rows
from harness.data.synthetic import SyntheticConfig, SyntheticDataset
from harness.data.synthetic_hard import SyntheticHardConfig, SyntheticHardDataset
from harness.data.transforms import Compose, RandomHorizontalFlip, Resize
from harness.data.voc import VOCDataset
from harness.data.yolo import YOLODataset

__all__ = [
    "BACKGROUND",
    "BOX_KEYS",
    "COCODataset",
    "Compose",
    "DatasetError",
    "DatasetSpec",
    "DetectionDataset",
    "KINDS",
    "RandomHorizontalFlip",
    "Resize",
    "SyntheticConfig",
    "SyntheticDataset",
    "SyntheticHardConfig",
    "SyntheticHardDataset",
    "Target",
    "Transform",
    "VOCDataset",
    "YOLODataset",
    "available_splits",
    "build_dataset",
    "build_transforms",
    "check_target",
    "collate",
    "dataset_options",
    "dataset_stats",
    "default_splits",
    "format_stats",
    "image_to_tensor",
    "make_target",
    "parse_dataset_spec",
    "printable",
    "stats_rows",
    "training_target",
]
