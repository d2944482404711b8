"""COCO loader on a hand-written instances JSON."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
import torch

from harness.data import (
    BACKGROUND,
    COCODataset,
    DatasetError,
    check_target,
    training_target,
)
from harness.data.coco import coco_split_of


def _coco() -> dict[str, Any]:
    return {
        "images": [
            {"id": 10, "file_name": "ten.png", "width": 40, "height": 30},
            {"id": 5, "file_name": "sub/five.png", "width": 20, "height": 10},
            {"id": 20, "file_name": "twenty.png", "width": 16, "height": 16},
        ],
        "annotations": [
            {"id": 1, "image_id": 10, "category_id": 7, "bbox": [1.5, 2, 3, 4], "iscrowd": 0},
            {"id": 2, "image_id": 10, "category_id": 12, "bbox": [0, 0, 40, 30], "iscrowd": 1},
            {"id": 3, "image_id": 20, "category_id": 3, "bbox": [4, 4, 8, 2]},
        ],
        "categories": [{"id": 7, "name": "cat"}, {"id": 3, "name": "dog"}, {"id": 12, "name": "bird"}],
    }


def _write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    return path


def test_categories_map_to_contiguous_labels_and_back(tmp_path: Path):
    ds = COCODataset(_write(tmp_path, _coco()))
    assert ds.class_names == (BACKGROUND, "dog", "cat", "bird")  # sorted by category id 3, 7, 12
    assert ds.label_to_category == {1: 3, 2: 7, 3: 12}
    assert ds.category_to_label == {3: 1, 7: 2, 12: 3}
    assert ds.num_classes == 3


def test_boxes_crowd_and_image_without_annotations(tmp_path: Path):
    ds = COCODataset(_write(tmp_path, _coco()))
    assert ds.image_ids == [5, 10, 20] and len(ds) == 3
    empty = ds.annotation(0)
    check_target(empty)
    assert empty["boxes"].shape == (0, 4) and empty["image_id"] == 5 and empty["orig_size"].tolist() == [10, 20]
    ten = ds.annotation(1)
    check_target(ten)
    assert torch.equal(ten["boxes"], torch.tensor([[1.5, 2.0, 4.5, 6.0], [0.0, 0.0, 40.0, 30.0]]))
    assert ten["labels"].tolist() == [2, 3]
    assert ten["iscrowd"].tolist() == [False, True]
    assert training_target(ten)["labels"].tolist() == [2]
    twenty = ds.annotation(2)
    assert torch.equal(twenty["boxes"], torch.tensor([[4.0, 4.0, 12.0, 6.0]])) and twenty["labels"].tolist() == [1]


def test_images_dir_and_loading(tmp_path: Path):
    images = tmp_path / "imgs"
    (images / "sub").mkdir(parents=True)
    cv2.imwrite(str(images / "sub" / "five.png"), np.full((10, 20, 3), (255, 0, 0), np.uint8))  # BGR blue
    ds = COCODataset(_write(tmp_path, _coco()), images_dir=images)
    image = ds.load_image(0)
    assert image.shape == (10, 20, 3) and image[0, 0].tolist() == [0, 0, 255]
    with pytest.raises(DatasetError, match=r"ten\.png is missing"):
        ds.load_image(1)
    assert COCODataset(_write(tmp_path, _coco())).image_path(0) == tmp_path / "sub" / "five.png"


@pytest.mark.parametrize("key", ["images", "annotations", "categories"])
def test_missing_top_level_key(tmp_path: Path, key: str):
    data = _coco()
    del data[key]
    with pytest.raises(DatasetError, match=f"missing key.*{key}"):
        COCODataset(_write(tmp_path, data))


def test_missing_entry_keys_and_unknown_ids(tmp_path: Path):
    data = _coco()
    del data["images"][0]["file_name"]
    with pytest.raises(DatasetError, match="images entry is missing key.*file_name"):
        COCODataset(_write(tmp_path, data))
    data = _coco()
    del data["annotations"][0]["bbox"]
    with pytest.raises(DatasetError, match="bbox"):
        COCODataset(_write(tmp_path, data))
    data = _coco()
    data["annotations"][0]["image_id"] = 99
    with pytest.raises(DatasetError, match="unknown image id 99"):
        COCODataset(_write(tmp_path, data))
    data = _coco()
    data["annotations"][0]["category_id"] = 4
    with pytest.raises(DatasetError, match="unknown category id 4"):
        COCODataset(_write(tmp_path, data))


def test_bad_files(tmp_path: Path):
    with pytest.raises(DatasetError, match="does not exist"):
        COCODataset(tmp_path / "nope.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(DatasetError, match="not valid JSON"):
        COCODataset(bad)
    data = _coco()
    data["images"][0]["file_name"] = "../escape.png"
    with pytest.raises(DatasetError, match="refusing"):
        COCODataset(_write(tmp_path, data))


def test_degenerate_dropped_and_outside_clipped(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    data = _coco()
    data["annotations"] += [
        {"id": 4, "image_id": 20, "category_id": 3, "bbox": [1, 1, 0, 5]},
        {"id": 5, "image_id": 20, "category_id": 3, "bbox": [10, -2, 10, 4]},
    ]
    ds = COCODataset(_write(tmp_path, data))
    assert torch.equal(ds.annotation(2)["boxes"], torch.tensor([[4.0, 4.0, 12.0, 6.0], [10.0, 0.0, 16.0, 2.0]]))
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "dropping degenerate" in messages and "clipping" in messages


def test_hash_split_is_deterministic_and_partitions(tmp_path: Path):
    data = {"images": [{"id": i, "file_name": f"{i}.jpg", "width": 8, "height": 8} for i in range(1, 201)],
            "annotations": [], "categories": [{"id": 1, "name": "x"}]}
    path = _write(tmp_path, data)
    train, test = COCODataset(path, split="train"), COCODataset(path, split="test")
    everything = COCODataset(path, split="all")
    assert sorted(train.image_ids + test.image_ids) == everything.image_ids == list(range(1, 201))
    assert all(coco_split_of(i) == "test" for i in test.image_ids)
    assert 25 <= len(test) <= 55  # about 20 % of 200
    assert COCODataset(path, split="test").image_ids == test.image_ids
    with pytest.raises(DatasetError, match="all, train, test"):
        COCODataset(path, split="val")
