"""Dataset spec strings, split defaults and build_dataset."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from harness.data import (
    DatasetError,
    SyntheticConfig,
    available_splits,
    build_dataset,
    default_splits,
    parse_dataset_spec,
)

TINY = SyntheticConfig(train_images=4, val_images=2, test_images=3)


def _coco_json(tmp_path: Path) -> Path:
    path = tmp_path / "ann.json"
    images = [{"id": i, "file_name": f"{i}.jpg", "width": 8, "height": 8} for i in range(20)]
    path.write_text(json.dumps({"images": images, "annotations": [], "categories": [{"id": 1, "name": "x"}]}))
    return path


def test_parse_kinds(tmp_path: Path):
    assert parse_dataset_spec("synthetic").kind == "synthetic"
    voc = parse_dataset_spec(f"voc:{tmp_path}")
    assert voc.kind == "voc" and voc.path == tmp_path
    path = _coco_json(tmp_path)
    coco = parse_dataset_spec(f"coco:{path}")
    assert (coco.kind, coco.path, coco.images_dir) == ("coco", path, None)
    with_images = parse_dataset_spec(f"coco:{path}:{tmp_path}")
    assert with_images.images_dir == tmp_path and str(with_images) == f"coco:{path}:{tmp_path}"


def test_parse_errors(tmp_path: Path):
    with pytest.raises(DatasetError, match="unknown dataset kind 'kitti'.*synthetic, synthetic-hard, voc:DIR, coco:"):
        parse_dataset_spec("kitti:/data")
    with pytest.raises(DatasetError, match="nowhere"):
        parse_dataset_spec(f"voc:{tmp_path / 'nowhere'}")
    with pytest.raises(DatasetError, match=r"missing\.json"):
        parse_dataset_spec(f"coco:{tmp_path / 'missing.json'}")
    with pytest.raises(DatasetError, match="images folder"):
        parse_dataset_spec(f"coco:{_coco_json(tmp_path)}:{tmp_path / 'no_images'}")
    with pytest.raises(DatasetError, match="needs a path"):
        parse_dataset_spec("voc:")
    with pytest.raises(DatasetError, match="takes no argument"):
        parse_dataset_spec("synthetic:big")


def test_splits(tmp_path: Path, voc2007_dir: Path, voc_sample_dir: Path, bccd_dir: Path):
    assert default_splits("synthetic") == ("train", "test")
    assert available_splits("synthetic") == ["train", "val", "test"]
    assert default_splits(f"voc:{bccd_dir}") == ("trainval", "test")
    assert available_splits(f"voc:{bccd_dir}") == ["test", "train", "trainval", "val"]
    assert default_splits(f"voc:{voc2007_dir}") == ("trainval", "test")
    with pytest.raises(DatasetError, match="evaluation split.*found: trainval"):
        default_splits(f"voc:{voc_sample_dir / 'VOC2012'}")
    with pytest.raises(DatasetError, match="VOC2007"):
        available_splits(f"voc:{voc_sample_dir}")
    assert default_splits(f"coco:{_coco_json(tmp_path)}") == ("train", "test")


def test_build_synthetic_resized_and_flipped():
    plain = build_dataset("synthetic", "val", min_size=96, max_size=160, synthetic=TINY)
    flipped = build_dataset("synthetic", "val", min_size=96, max_size=160, flip_prob=1.0, synthetic=TINY)
    image, target = plain[0]
    flipped_image, flipped_target = flipped[0]
    assert image.shape[1] == 96 and image.shape[2] <= 160 and target["size"].tolist() == list(image.shape[1:])
    assert torch.equal(flipped_image, image.flip(-1))
    width = image.shape[2]
    assert torch.allclose(flipped_target["boxes"][:, [2, 0]], width - target["boxes"][:, [0, 2]])
    assert len(plain) == 2 and plain.name == "synthetic/val"


def test_build_voc_and_unknown_split(voc2007_dir: Path):
    ds = build_dataset(f"voc:{voc2007_dir}", "test", min_size=600, max_size=1000)
    image, target = ds[0]
    assert tuple(image.shape) == (3, 850, 600)  # 500 x 353 -> shorter side 600
    scale = torch.tensor([600 / 353, 850 / 500] * 2)
    assert torch.allclose(target["boxes"][0], torch.tensor([47.0, 239.0, 195.0, 371.0]) * scale)
    with pytest.raises(DatasetError, match="no split 'val'.*available: test, trainval"):
        build_dataset(f"voc:{voc2007_dir}", "val", min_size=600, max_size=1000)
    with pytest.raises(DatasetError, match="no split 'trainval'"):
        build_dataset("synthetic", "trainval", min_size=600, max_size=1000)


def test_parse_coco_pair_and_yolo(tmp_path: Path):
    first = _coco_json(tmp_path)
    second = tmp_path / "val,2.json"  # a comma inside a file name survives: only ".json," separates files
    second.write_text(first.read_text())
    pair = parse_dataset_spec(f"coco:{first},{second}")
    assert (pair.path, pair.test_path, pair.images_dir, pair.test_images_dir) == (first, second, None, None)
    assert parse_dataset_spec(str(pair)) == pair
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    per_file = parse_dataset_spec(f"coco:{first},{second}:{tmp_path / 'a'},{tmp_path / 'b'}")
    assert (per_file.images_dir, per_file.test_images_dir) == (tmp_path / "a", tmp_path / "b")
    assert parse_dataset_spec(str(per_file)) == per_file
    with pytest.raises(DatasetError, match="one JSON file, or two"):
        parse_dataset_spec(f"coco:{first},{first},{first}")
    with pytest.raises(DatasetError, match="COCO images folder .* does not exist"):
        parse_dataset_spec(f"coco:{first},{second}:{tmp_path / 'a'},{tmp_path / 'zz'}")
    yolo = parse_dataset_spec(f"yolo:{tmp_path}")
    assert (yolo.kind, yolo.path, str(yolo)) == ("yolo", tmp_path, f"yolo:{tmp_path}")
    with pytest.raises(DatasetError, match="YOLO dataset .* does not exist"):
        parse_dataset_spec(f"yolo:{tmp_path / 'nope'}")
    with pytest.raises(DatasetError, match="yolo:DIR"):
        parse_dataset_spec("darknet:x")
    with pytest.raises(DatasetError, match="data.class_names is for VOC and YOLO"):
        build_dataset(f"coco:{first}", "train", min_size=32, max_size=32, class_names=("x",))
