"""dataset_stats numbers on a hand-made dataset, and the text rendering."""
from __future__ import annotations

import numpy as np
import pytest

from harness.data import (
    BACKGROUND,
    DetectionDataset,
    Target,
    dataset_stats,
    format_stats,
    make_target,
    stats_rows,
)


class _Tiny(DetectionDataset):
    """Three images: two boxes, none, one crowd box. Loading pixels is an error (stats must not)."""

    class_names = (BACKGROUND, "a", "b\x1b[31m")
    name = "tiny/test"
    _data = [
        ((100, 200), [[0, 0, 10, 20], [5, 5, 45, 45]], [1, 2], [False, True], [False, False]),
        ((50, 60), [], [], [], []),
        ((300, 100), [[0, 0, 100, 100]], [1], [False], [True]),
    ]

    def __len__(self) -> int:
        return len(self._data)

    def load_image(self, index: int) -> np.ndarray:
        raise AssertionError("dataset_stats must not load images")

    def annotation(self, index: int) -> Target:
        size, boxes, labels, difficult, crowd = self._data[index]
        return make_target(boxes, labels, image_id=index, orig_size=size, difficult=difficult, iscrowd=crowd)


def test_stats_numbers():
    stats = dataset_stats(_Tiny())
    assert stats["name"] == "tiny/test"
    assert (stats["images"], stats["boxes"], stats["empty_images"]) == (3, 3, 1)
    assert (stats["difficult"], stats["crowd"]) == (1, 1)
    assert stats["boxes_per_image"] == {"mean": 1.0, "min": 0, "max": 2}
    assert stats["classes"] == {
        "a": {"boxes": 2, "difficult": 0, "crowd": 1},
        "b\x1b[31m": {"boxes": 1, "difficult": 1, "crowd": 0},
    }
    assert stats["box_width"] == {"min": 10.0, "median": 40.0, "max": 100.0}
    assert stats["box_height"] == {"min": 20.0, "median": 40.0, "max": 100.0}
    assert stats["box_area"] == {"min": 200.0, "median": 1600.0, "max": 10000.0}
    assert stats["area_buckets"] == {"small": 1, "medium": 1, "large": 1}
    assert stats["image_height"] == {"min": 50, "max": 300}
    assert stats["image_width"] == {"min": 60, "max": 200}


def test_empty_dataset_stats():
    class Empty(_Tiny):
        _data = []

    stats = dataset_stats(Empty())
    assert stats["images"] == 0 and stats["box_width"]["min"] is None
    assert "images" in format_stats(stats)


def test_format_escapes_class_names():
    text = format_stats(dataset_stats(_Tiny()))
    assert "\x1b" not in text and "b\\x1b[31m" in text
    assert text.splitlines()[0] == "tiny/test"
    rows = dict(stats_rows(dataset_stats(_Tiny())))
    assert rows["class a"] == "2 (1 crowd)"
    assert rows["boxes / image (min / mean / max)"] == "0 / 1.00 / 2"
    assert rows["box area (min / median / max)"] == "200 / 1600 / 10000"
    assert rows["boxes small / medium / large"] == "1 / 1 / 1"


@pytest.mark.parametrize("split", ["train", "test"])
def test_stats_on_synthetic_split(split: str):
    from harness.data import SyntheticConfig, SyntheticDataset

    stats = dataset_stats(SyntheticDataset(split, SyntheticConfig(train_images=5, test_images=5)))
    assert stats["images"] == 5 and stats["boxes"] >= 10
    assert sum(c["boxes"] for c in stats["classes"].values()) == stats["boxes"]
