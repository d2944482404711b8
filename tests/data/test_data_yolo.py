"""YOLO text labels (issue 19, item 2): layouts, class names, conversion, bad lines, on real files."""
from __future__ import annotations

import logging
from pathlib import Path

import cv2
import pytest
import torch
from dirty_data import EXPECTED_BOXES, build_small, exif_rotated_jpeg, image, write_yolo

from harness.data import (
    BACKGROUND,
    DatasetError,
    available_splits,
    build_dataset,
    default_splits,
)
from harness.data.yolo import label_path
from harness.data.yolo_yaml import parse_data_yaml


@pytest.mark.parametrize("form", ["list", "dict"])
def test_ultralytics_tree_with_data_yaml(tmp_path: Path, form: str):
    root = write_yolo(tmp_path / "yolo", {"train": 3, "val": 2}, yaml=form)
    for spec in (f"yolo:{root}", f"yolo:{root / 'data.yaml'}"):
        assert available_splits(spec) == ["train", "val"] and default_splits(spec) == ("train", "val")
        ds = build_small(spec, "val")
        assert len(ds) == 2 and ds.class_names == (BACKGROUND, "cat", "dog")
        target = ds.annotation(1)
        assert torch.allclose(target["boxes"], EXPECTED_BOXES, atol=1e-3) and target["labels"].tolist() == [1, 2]
        assert target["orig_size"].tolist() == [48, 64] and target["boxes"].dtype == torch.float32
    assert "data.yaml" in ds.layout and ds.split_rule == "by data.yaml"
    image_t, resized = ds[0]  # the transforms move the converted boxes like any other
    assert image_t.shape[-2:] == (48, 64) and torch.allclose(resized["boxes"], EXPECTED_BOXES, atol=1e-3)


def test_box_conversion_uses_each_images_own_size(tmp_path: Path):
    root = write_yolo(tmp_path / "yolo", {"train": 1, "test": 1}, lines=["0 0.5 0.5 0.5 0.25"])
    cv2.imwrite(str(root / "images" / "test" / "test0.jpg"), image(100, 200))  # 200 wide, 100 high
    ds = build_small(f"yolo:{root}", "test")
    assert ds.annotation(0)["boxes"].tolist() == [[50.0, 37.5, 150.0, 62.5]]
    assert ds.annotation(0)["orig_size"].tolist() == [100, 200]


def test_roboflow_split_folders_classes_txt_and_flat_80_20(tmp_path: Path):
    # train/images + train/labels, valid/..., names from classes.txt
    root = tmp_path / "rf"
    flat = write_yolo(tmp_path / "tmp", {"x": 4}, yaml=None)
    for split in ("train", "valid"):
        (root / split).mkdir(parents=True)
        (flat / "images" / "x").rename(root / split / "images")
        (flat / "labels" / "x").rename(root / split / "labels")
        flat = write_yolo(tmp_path / f"tmp_{split}", {"x": 2}, yaml=None)
    (root / "classes.txt").write_text("cat\ndog\n")
    assert default_splits(f"yolo:{root}") == ("train", "val")
    val = build_small(f"yolo:{root}", "val")
    assert len(val) == 2 and val.class_names == (BACKGROUND, "cat", "dog") and "classes.txt" in val.layout
    # images/ + labels/ with no split folders: 80/20 by file name, seeded
    plain = tmp_path / "plain"
    tree = write_yolo(tmp_path / "t2", {"all": 10}, yaml=None, classes_txt=True)
    plain.mkdir()
    (tree / "images" / "all").rename(plain / "images")
    (tree / "labels" / "all").rename(plain / "labels")
    (tree / "classes.txt").rename(plain / "classes.txt")
    train, test = build_small(f"yolo:{plain}", "train"), build_small(f"yolo:{plain}", "test")
    assert (len(train), len(test)) == (8, 2) and "80/20" in test.split_rule
    assert build_small(f"yolo:{plain}", "test", split_seed=5).image_path(0) != test.image_path(0) or \
        build_small(f"yolo:{plain}", "test", split_seed=5).image_path(1) != test.image_path(1)


def test_class_names_from_the_config_and_none_at_all(tmp_path: Path):
    root = write_yolo(tmp_path / "yolo", {"train": 1, "val": 1}, yaml=None)
    with pytest.raises(DatasetError, match="no class names for the YOLO labels.*--set data.class_names"):
        build_small(f"yolo:{root}", "val")
    ds = build_small(f"yolo:{root}", "val", class_names=("kitty", "doggy"))
    assert ds.class_names == (BACKGROUND, "kitty", "doggy") and "data.class_names" in ds.layout


def test_missing_and_empty_label_files_are_background_images(tmp_path: Path, caplog):
    root = write_yolo(tmp_path / "yolo", {"train": 3, "val": 1})
    (root / "labels" / "train" / "train0.txt").unlink()
    (root / "labels" / "train" / "train1.txt").write_text("")
    (root / "labels" / "train" / "stray.txt").write_text("0 0.5 0.5 0.1 0.1\n")
    with caplog.at_level(logging.WARNING, logger="harness.data.yolo"):
        ds = build_small(f"yolo:{root}", "train")
    assert "2 of 3 images have no (usable) boxes (1 without a label file)" in caplog.text
    assert "1 label files have no image (not used): labels/train/stray.txt" in caplog.text
    assert ds.annotation(0)["boxes"].shape == (0, 4) and len(ds.annotation(2)["boxes"]) == 2


def test_label_path_and_yaml_subset(tmp_path: Path):
    assert label_path(Path("/d/images/train/a.b.jpg")) == Path("/d/labels/train/a.b.txt")
    assert label_path(Path("/d/train/images/a.png")) == Path("/d/train/labels/a.txt")
    assert label_path(Path("/d/pics/a.jpg")) == Path("/d/pics/a.txt")
    path = tmp_path / "data.yaml"
    path.write_text("train: ../train/images  # comment\nval: [a, 'b c']\nnames:\n  - 'it''s'\n  - \"x # y\"\n"
                    "nc: 2\ntest: {0: a, 1: 'b'}\n")
    assert parse_data_yaml(path) == {"train": "../train/images", "val": ["a", "b c"], "names": ["it's", "x # y"],
                                     "nc": "2", "test": {"0": "a", "1": "b"}}
    # the shape of ultralytics' own dataset files: a download script under a key the loader skips,
    # and a names list over several lines
    path.write_text("path: ../datasets/coco8\ntrain: images/train\nval: images/val\ntest:\n"
                    "names: ['person', 'bicycle',\n        'car']\n"
                    "download: |\n  from pathlib import Path\n  x = {'a': 1}  # a comment\n  - not a list\n")
    assert parse_data_yaml(path) == {"path": "../datasets/coco8", "train": "images/train", "val": "images/val",
                                     "test": None, "names": ["person", "bicycle", "car"]}
    path.write_text("names:\n  0: a\n  oops\n")
    with pytest.raises(DatasetError, match=r"data\.yaml:3: cannot read 'oops'"):
        parse_data_yaml(path)


def test_exif_rotated_photo_is_warned_and_a_non_image_named(tmp_path: Path, caplog):
    root = write_yolo(tmp_path / "yolo", {"train": 2, "val": 1})
    (root / "images" / "train" / "train1.jpg").write_bytes(exif_rotated_jpeg(image(48, 64)))
    with caplog.at_level(logging.WARNING, logger="harness.data.yolo"):
        ds = build_small(f"yolo:{root}", "train")
    assert "1 images carry an EXIF orientation tag, e.g. train1.jpg" in caplog.text
    assert ds.annotation(1)["orig_size"].tolist() == [48, 64]  # the stored grid, as read_rgb returns it
    (root / "images" / "val" / "val0.jpg").write_bytes(b"not an image at all")
    with pytest.raises(DatasetError, match=r"cannot decode image .*val0\.jpg"):
        build_small(f"yolo:{root}", "val")


def test_yolo_export_of_real_voc_data_gives_the_voc_boxes(bccd_dir: Path, tmp_path: Path):
    """BCCD's VOC boxes written as YOLO lines (as a converter would) come back as the same boxes."""
    voc = build_dataset(f"voc:{bccd_dir}", "test", min_size=480, max_size=640)
    root = tmp_path / "bccd_yolo"
    (root / "images" / "val").mkdir(parents=True)
    (root / "labels" / "val").mkdir(parents=True)
    (root / "images" / "train").mkdir()
    names = voc.class_names[1:]
    (root / "data.yaml").write_text(f"train: images/train\nval: images/val\nnames: {list(names)}\n")
    chosen = range(0, len(voc), 6)
    for i in chosen:
        src = voc.image_path(i)
        (root / "images" / "val" / src.name).symlink_to(src)
        target = voc.annotation(i)
        h, w = target["orig_size"].tolist()
        lines = [f"{label - 1} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}"
                 for (x1, y1, x2, y2), label in zip(target["boxes"].tolist(), target["labels"].tolist())]
        (root / "labels" / "val" / src.with_suffix(".txt").name).write_text("\n".join(lines) + "\n")
    yolo = build_dataset(f"yolo:{root}", "val", min_size=480, max_size=640)
    assert len(yolo) == len(chosen) and yolo.class_names == voc.class_names
    for k, i in enumerate(chosen):
        a, b = voc.annotation(i), yolo.annotation(k)
        assert yolo.image_path(k).name == voc.image_path(i).name
        assert torch.equal(a["labels"], b["labels"]) and torch.equal(a["orig_size"], b["orig_size"])
        assert torch.allclose(a["boxes"], b["boxes"], atol=1e-3)  # 6 decimals of a 640-px width
