"""``harness run`` trains and tests on each dataset layout and format of issue 19 (tiny settings, CPU)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from dirty_data import coco_json, image, jpeg_bytes, write_voc_tree, write_yolo
from typer.testing import CliRunner

from harness.cli import app


def _voc_beside(tmp: Path) -> str:
    return f"voc:{write_voc_tree(tmp / 'labelimg', {f'img{i}': ('', '') for i in range(5)})}"


def _voc_split_folders(tmp: Path) -> str:
    placement = {"a0": ("train", "train"), "a1": ("train", "train"), "a2": ("train", "train"),
                 "b0": ("valid", "valid"), "c0": ("test", "test")}
    return f"voc:{write_voc_tree(tmp / 'export', placement)}"


def _voc_annotations_images(tmp: Path) -> str:
    return f"voc:{write_voc_tree(tmp / 'ds', {f'p{i}': ('annotations', 'images') for i in range(5)})}"


def _yolo(tmp: Path) -> str:
    return f"yolo:{write_yolo(tmp / 'yolo', {'train': 3, 'val': 1}) / 'data.yaml'}"


def _coco_two_files(tmp: Path) -> str:
    for name in ("a.jpg", "b.jpg", "c.jpg", "d.jpg"):
        (tmp / name).write_bytes(jpeg_bytes(image()))
    box = [[16, 12, 16, 12, 1], [39, 19, 21, 25, 2]]
    train = coco_json(tmp / "train.json", [(1, "a.jpg"), (2, "b.jpg"), (3, "c.jpg")], {1: box, 2: box, 3: box})
    val = coco_json(tmp / "val.json", [(9, "d.jpg")], {9: box})
    return f"coco:{train},{val}"


@pytest.mark.parametrize("make, train_images, test_images", [
    (_voc_beside, 4, 1), (_voc_split_folders, 3, 1), (_voc_annotations_images, 4, 1), (_yolo, 3, 1),
    (_coco_two_files, 3, 1),
], ids=["voc-beside-images", "voc-train-valid-test", "voc-annotations-images", "yolo-data-yaml", "coco-two-files"])
def test_harness_run_trains_on_each_format(tmp_path: Path, tiny_run_args: list[str], make, train_images: int,
                                           test_images: int):
    spec = make(tmp_path)
    result = CliRunner().invoke(app, ["run", "--results", str(tmp_path / "results"), "--dataset", spec,
                                      *tiny_run_args])
    assert result.exit_code == 0, result.output
    (record,) = [json.loads(x) for x in (tmp_path / "results" / "runs.jsonl").read_text().splitlines()]
    assert record["status"] == "ok"
    info = record["dataset_info"]
    assert (info["train"]["images"], info["test"]["images"]) == (train_images, test_images)
    assert info["classes"] == ["cat", "dog"] and info["train"]["name"].startswith(spec.split(":")[0])
