"""VOC loader on the real samples (exact coordinates, difficult, BCCD quirks) and on edge cases."""
from __future__ import annotations

import logging
import xml.etree.ElementTree as ET
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from harness.data import BACKGROUND, DatasetError, VOCDataset, check_target
from harness.data.voc_layout import resolve_voc_root, voc_splits

VOC2007_CLASSES = (BACKGROUND, "car", "chair", "dog", "person", "sofa", "train")


def test_voc2007_exact_coordinates(voc2007_dir: Path):
    ds = VOCDataset(voc2007_dir, "test")
    assert ds.ids == ["000001", "000002", "000003", "000004"]
    assert ds.class_names == VOC2007_CLASSES
    # 000001.xml: dog (48, 240, 195, 371) and person (8, 12, 352, 498), 1-based inclusive, 353 x 500.
    target = ds.annotation(0)
    check_target(target)
    assert torch.equal(target["boxes"], torch.tensor([[47.0, 239.0, 195.0, 371.0], [7.0, 11.0, 352.0, 498.0]]))
    assert target["labels"].tolist() == [3, 4]
    assert target["orig_size"].tolist() == [500, 353] and target["image_id"] == 0
    assert target["boxes"].dtype == torch.float32 and target["labels"].dtype == torch.int64


def test_voc2007_matches_every_xml_box(voc2007_dir: Path):
    for split in voc_splits(voc2007_dir):
        ds = VOCDataset(voc2007_dir, split)
        for i, image_id in enumerate(ds.ids):
            root = ET.parse(voc2007_dir / "Annotations" / f"{image_id}.xml").getroot()
            keys = ("xmin", "ymin", "xmax", "ymax")
            raw = [[float(o.find("bndbox").findtext(k)) for k in keys] for o in root.iter("object")]
            expected = np.asarray(raw, dtype=np.float32) - np.array([1, 1, 0, 0], dtype=np.float32)
            assert np.array_equal(ds.annotation(i)["boxes"].numpy(), expected)
            names = [ds.class_names[k] for k in ds.annotation(i)["labels"].tolist()]
            assert names == [o.findtext("name") for o in root.iter("object")]


def test_voc2007_difficult_and_shared_label_map(voc2007_dir: Path):
    trainval, test = VOCDataset(voc2007_dir, "trainval"), VOCDataset(voc2007_dir, "test")
    assert trainval.class_names == test.class_names == VOC2007_CLASSES  # trainval alone has only chairs
    difficult = trainval.annotation(0)["difficult"]
    assert difficult.dtype == torch.bool and int(difficult.sum()) == 2
    assert sum(int(test.annotation(i)["difficult"].sum()) for i in range(len(test))) == 0


def test_voc2007_load_image_is_rgb(voc2007_dir: Path):
    ds = VOCDataset(voc2007_dir, "test")
    image = ds.load_image(0)
    assert image.dtype == np.uint8 and image.shape == (500, 353, 3)
    bgr = cv2.imread(str(voc2007_dir / "JPEGImages" / "000001.jpg"))
    assert np.array_equal(image, bgr[:, :, ::-1])
    tensor, target = ds[0]
    assert tensor.shape == (3, 500, 353) and target["size"].tolist() == [500, 353]


def test_ambiguous_root_lists_candidates(voc_sample_dir: Path):
    with pytest.raises(DatasetError, match="VOC2007.*VOC2012"):
        VOCDataset(voc_sample_dir, "trainval")


def test_missing_split_lists_available(voc2007_dir: Path):
    with pytest.raises(DatasetError, match="available: test, trainval"):
        VOCDataset(voc2007_dir, "val")


def test_bccd_degenerate_boxes_dropped_with_warning(bccd_dir: Path, caplog: pytest.LogCaptureFixture):
    with caplog.at_level(logging.WARNING, logger="harness.data.voc"):
        ds = VOCDataset(bccd_dir, "trainval")  # 00338 is in val, 00343 in train
    warned = [r.getMessage() for r in caplog.records if "degenerate" in r.getMessage()]
    assert len(warned) == 2
    assert any("BloodImage_00338.xml" in m and "504.0, 337.0, 504.0, 337.0" in m for m in warned)
    assert any("BloodImage_00343.xml" in m and "181.0, 329.0, 181.0, 329.0" in m for m in warned)
    assert ds.class_names == (BACKGROUND, "Platelets", "RBC", "WBC")
    index = ds.ids.index("BloodImage_00338")
    n_xml = len(ET.parse(bccd_dir / "Annotations" / "BloodImage_00338.xml").getroot().findall("object"))
    target = ds.annotation(index)
    check_target(target)
    assert len(target["boxes"]) == n_xml - 1
    boxes = target["boxes"]
    assert ((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])).all()


def test_bccd_splits(bccd_dir: Path):
    assert voc_splits(bccd_dir) == ["test", "train", "trainval", "val"]
    test = VOCDataset(bccd_dir, "test")
    assert len(test) == 72 and test.name == "voc:bccd/test"
    for i in range(0, len(test), 9):
        check_target(test.annotation(i))
        assert test.annotation(i)["orig_size"].tolist() == [480, 640]


# ---------------------------------------------------------------- hand-made VOC trees

def _write_voc(root: Path, objects: dict[str, list[tuple[str, int, int, int, int, int]]],
               size: tuple[int, int] = (20, 30), filename: dict[str, str] | None = None) -> Path:
    """Tiny VOC tree: ``objects[id] = [(name, xmin, ymin, xmax, ymax, difficult), ...]``, images h x w."""
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    for image_id, objs in objects.items():
        body = "".join(
            f"<object><name>{n}</name><difficult>{d}</difficult><bndbox><xmin>{a}</xmin><ymin>{b}</ymin>"
            f"<xmax>{c}</xmax><ymax>{e}</ymax></bndbox></object>"
            for n, a, b, c, e, d in objs
        )
        fname = (filename or {}).get(image_id, f"{image_id}.jpg")
        xml = (f"<annotation><filename>{fname}</filename><size><width>{size[1]}</width>"
               f"<height>{size[0]}</height><depth>3</depth></size>{body}</annotation>")
        (root / "Annotations" / f"{image_id}.xml").write_text(xml)
    (root / "ImageSets" / "Main" / "all.txt").write_text("\n".join(objects) + "\n")
    return root


def test_clipping_and_unknown_classes(tmp_path: Path, caplog: pytest.LogCaptureFixture):
    objects = [("cat", 1, 1, 10, 10, 0), ("cat", 25, 5, 35, 25, 0), ("dog", 2, 2, 4, 4, 1)]
    root = _write_voc(tmp_path / "voc", {"a": objects})  # the second cat sticks out of the 30 x 20 image
    with caplog.at_level(logging.WARNING):
        ds = VOCDataset(root, "all")
    assert any("clipping" in r.getMessage() and "a.xml" in r.getMessage() for r in caplog.records)
    expected = torch.tensor([[0.0, 0.0, 10.0, 10.0], [24.0, 4.0, 30.0, 20.0], [1.0, 1.0, 4.0, 4.0]])
    assert torch.equal(ds.annotation(0)["boxes"], expected)
    assert ds.annotation(0)["difficult"].tolist() == [False, False, True]
    only_dog = VOCDataset(root, "all", class_names=[BACKGROUND, "dog"])
    assert only_dog.class_names == (BACKGROUND, "dog")
    assert only_dog.annotation(0)["labels"].tolist() == [1]


def test_images_missing_corrupt_and_grayscale(tmp_path: Path):
    root = _write_voc(tmp_path / "voc", {"gray": [("x", 1, 1, 5, 5, 0)], "bad": [], "gone": []})
    cv2.imwrite(str(root / "JPEGImages" / "gray.jpg"), np.full((20, 30), 128, np.uint8))
    (root / "JPEGImages" / "bad.jpg").write_bytes(b"not a jpeg")
    ds = VOCDataset(root, "all")
    gray = ds.load_image(0)
    assert gray.shape == (20, 30, 3) and gray.dtype == np.uint8
    with pytest.raises(DatasetError, match=r"cannot decode image .*bad\.jpg"):
        ds.load_image(1)
    with pytest.raises(DatasetError, match=r"gone\.jpg is missing"):
        ds.load_image(2)
    assert len(ds.annotation(1)["boxes"]) == 0 and ds.annotation(1)["boxes"].shape == (0, 4)


def test_paths_cannot_escape_root(tmp_path: Path):
    root = _write_voc(tmp_path / "voc", {"a": []})
    (root / "ImageSets" / "Main" / "evil.txt").write_text("../../etc/passwd\n")
    with pytest.raises(DatasetError, match="refusing"):
        VOCDataset(root, "evil", class_names=["x"])
    root2 = _write_voc(tmp_path / "voc2", {"b": []}, filename={"b": "../secret.jpg"})
    with pytest.raises(DatasetError, match="refusing"):
        VOCDataset(root2, "all", class_names=["x"])


def test_resolve_single_child_and_not_voc(tmp_path: Path):
    root = _write_voc(tmp_path / "devkit" / "VOC2099", {"a": []})
    assert resolve_voc_root(tmp_path / "devkit") == root
    with pytest.raises(DatasetError, match="not a PASCAL VOC folder"):
        resolve_voc_root(tmp_path / "devkit" / "VOC2099" / "JPEGImages")


def test_broken_xml_names_file(tmp_path: Path):
    root = _write_voc(tmp_path / "voc", {"a": []})
    (root / "Annotations" / "a.xml").write_text("<annotation><object>")
    with pytest.raises(DatasetError, match=r"a\.xml"):
        VOCDataset(root, "all")
