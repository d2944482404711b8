"""VOC XML in the layouts people have, and COCO in two files (issue 19, items 1 and 3), on real files."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from dirty_data import (
    CAT,
    DOG,
    EXPECTED_BOXES,
    build_small,
    coco_json,
    image,
    jpeg_bytes,
    voc_xml,
    write_voc,
    write_voc_tree,
)
from typer.testing import CliRunner

from harness.cli import app
from harness.data import (
    BACKGROUND,
    DatasetError,
    available_splits,
    default_splits,
)
from harness.data.layouts import hash_split
from harness.data.voc_layout import voc_layout


def test_labelimg_xml_beside_each_image_split_80_20_by_seed(tmp_path: Path):
    root = write_voc_tree(tmp_path / "shots", {f"img{i:02d}": ("", "") for i in range(10)})
    layout = voc_layout(root)
    assert layout.kind == "scan" and "beside the XML (10)" in layout.description
    assert "80/20" in layout.split_rule and "seed 0" in layout.split_rule
    assert default_splits(f"voc:{root}") == ("train", "test")
    train, test = build_small(f"voc:{root}", "train"), build_small(f"voc:{root}", "test")
    assert (len(train), len(test)) == (8, 2) and not set(train.ids) & set(test.ids)
    assert train.class_names == (BACKGROUND, "cat", "dog")
    assert torch.equal(test.annotation(0)["boxes"], EXPECTED_BOXES) and test.annotation(0)["labels"].tolist() == [1, 2]
    assert test.image_path(0) == root / f"{test.ids[0]}.jpg"
    # the same seed gives the same split; another seed another one (fixed by the names, not by chance)
    assert build_small(f"voc:{root}", "test").ids == test.ids
    other = build_small(f"voc:{root}", "test", split_seed=1).ids
    assert other != test.ids and len(other) == 2
    assert hash_split([f"img{i:02d}" for i in range(10)], 1) == hash_split([f"img{i:02d}" for i in range(10)], 1)


def test_train_valid_test_folders_with_images_and_xml_side_by_side(tmp_path: Path):
    placement = {**{f"a{i}": ("train", "train") for i in range(3)}, "b0": ("valid", "valid"),
                 "c0": ("test", "test"), "c1": ("test", "test")}
    root = write_voc_tree(tmp_path / "export", placement)
    assert available_splits(f"voc:{root}") == ["test", "train", "val"]  # valid/ counts as val
    assert default_splits(f"voc:{root}") == ("train", "test")
    test = build_small(f"voc:{root}", "test")
    assert test.ids == ["test/c0", "test/c1"] and test.split_rule.startswith("by folder: test, train, val")
    assert len(build_small(f"voc:{root}", "train")) == 3 and build_small(f"voc:{root}", "val").ids == ["valid/b0"]
    assert torch.equal(test.annotation(1)["boxes"], EXPECTED_BOXES)


def test_annotations_folder_beside_images_folder_and_filename_fallback(tmp_path: Path):
    placement = {f"p{i}": ("annotations", "images") for i in range(5)}
    root = write_voc_tree(tmp_path / "ds", placement, filename=False, ext=".png")  # no <filename>: by the XML name
    ds = build_small(f"voc:{root}", "train")
    assert "images/ (5)" in ds.layout and all(ds.image_path(i).parent == root / "images" for i in range(len(ds)))
    assert ds.load_image(0).shape == (48, 64, 3)
    # annotations/<split>/ mirrored by images/<split>/
    mirrored = write_voc_tree(tmp_path / "mirror", {"x": ("annotations/train", "images/train"),
                                                    "y": ("annotations/val", "images/val")})
    assert build_small(f"voc:{mirrored}", "val").image_path(0) == mirrored / "images" / "val" / "y.jpg"
    # VOC2007 folders without ImageSets: Annotations/ + JPEGImages/, split 80/20
    plain = write_voc_tree(tmp_path / "VOCplain", {f"q{i}": ("Annotations", "JPEGImages") for i in range(5)})
    assert build_small(f"voc:{plain}", "test").image_path(0).parent == plain / "JPEGImages"


def test_imagesets_layout_is_read_exactly_as_before(tmp_path: Path):
    root = write_voc(tmp_path / "voc", n_train=3, n_test=2)
    (root / "stray").mkdir()
    (root / "stray" / "extra.xml").write_text(voc_xml("t0.jpg", (48, 64), [CAT]))  # not read: split files rule
    layout = voc_layout(root)
    assert layout.kind == "imagesets" and layout.split_rule == "ImageSets/Main/<split>.txt"
    assert available_splits(f"voc:{root}") == ["test", "trainval"]
    assert build_small(f"voc:{root}", "trainval").ids == ["t0", "t1", "t2"]


def test_unnamed_images_missing_images_and_foreign_xml_are_warned(tmp_path: Path, caplog):
    root = write_voc_tree(tmp_path / "ds", {f"k{i}": ("", "") for i in range(5)})
    (root / "orphan.jpg").write_bytes(jpeg_bytes(image()))
    (root / "gone.xml").write_text(voc_xml("gone.jpg", (48, 64), [DOG]))
    (root / "pom.xml").write_text("<project><modelVersion>4.0.0</modelVersion></project>")
    with caplog.at_level(logging.WARNING, logger="harness.data.voc"):
        splits = available_splits(f"voc:{root}")
    assert "1 images that no XML names (not used): orphan.jpg" in caplog.text
    assert "1 of 6 XMLs name an image that is not there" in caplog.text and "gone.xml" in caplog.text
    assert "skipped 1 .xml files that are not VOC annotations" in caplog.text and "pom.xml" in caplog.text
    assert sum("gone" in build_small(f"voc:{root}", s).ids for s in splits) == 1
    code, text = _cli("datasets", f"voc:{root}")
    assert code == 2 and "gone.jpg is missing" in text  # a missing image still stops before training


def test_path_safety_and_nothing_found(tmp_path: Path):
    root = write_voc_tree(tmp_path / "ds", {"a": ("", ""), "b": ("", "")})
    (root / "b.xml").write_text(voc_xml("../../secret.jpg", (48, 64), [CAT]))
    with pytest.raises(DatasetError, match="refusing file name '../../secret.jpg'"):
        voc_layout(root)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "a.jpg").write_bytes(jpeg_bytes(image()))
    with pytest.raises(DatasetError, match="not a PASCAL VOC folder: no Annotations/ and no VOC .xml files"):
        available_splits(f"voc:{tmp_path / 'empty'}")


def test_one_split_folder_only_says_what_it_needs(tmp_path: Path):
    root = write_voc_tree(tmp_path / "ds", {"a": ("train", "train"), "b": ("train", "train")})
    with pytest.raises(DatasetError, match=r"need a training split .* and an evaluation split .*by folder: train"):
        default_splits(f"voc:{root}")


def _cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    text = " ".join(result.output.split())
    assert "Traceback" not in text
    return result.exit_code, text


def test_datasets_command_names_layout_and_split(tmp_path: Path):
    root = write_voc_tree(tmp_path / "shots", {f"img{i}": ("", "") for i in range(5)})
    code, text = _cli("datasets", f"voc:{root}", "--set", "data.split_seed=3")
    assert code == 0, text
    assert "layout VOC XML found below the folder: 5 files; where the images are: beside the XML (5)" in text
    assert "split 80/20 train/test by file name, seed 3" in text
    code, text = _cli("datasets", f"voc:{root}", "--set", "data.split_sed=3")
    assert code == 2 and "unknown config key 'data.split_sed'" in text


# ------------------------------------------------------------------ COCO in two files


def test_coco_in_two_files_test_split_is_the_second_file(tmp_path: Path):
    for name in ("a.jpg", "b.jpg", "c.jpg"):
        (tmp_path / name).write_bytes(jpeg_bytes(image()))
    train = coco_json(tmp_path / "train.json", [(1, "a.jpg"), (2, "b.jpg")], {1: [[16, 12, 16, 12, 1]], 2: []})
    val = coco_json(tmp_path / "val.json", [(7, "c.jpg")], {7: [[39, 19, 21, 25, 2]]})
    spec = f"coco:{train},{val}"
    assert default_splits(spec) == ("train", "test") and available_splits(spec) == ["train", "test"]
    tr, te = build_small(spec, "train"), build_small(spec, "test")
    assert tr.image_ids == [1, 2] and te.image_ids == [7]  # whole files, no 80/20 cut
    assert te.name == "coco:val/test" and "test = val.json" in te.split_rule
    assert torch.equal(te.annotation(0)["boxes"], torch.tensor([[39.0, 19.0, 60.0, 44.0]]))
    assert tr.class_names == te.class_names == (BACKGROUND, "cat", "dog")
    with pytest.raises(DatasetError, match="no split 'all'"):
        build_small(spec, "all")
    # one images folder per file
    (tmp_path / "tr").mkdir(), (tmp_path / "va").mkdir()
    (tmp_path / "va" / "c.jpg").write_bytes(jpeg_bytes(image()))
    per_file = build_small(f"coco:{train},{val}:{tmp_path / 'tr'},{tmp_path / 'va'}", "test")
    assert per_file.image_path(0) == tmp_path / "va" / "c.jpg"
    with pytest.raises(DatasetError, match="COCO annotation file .*nope.json' does not exist"):
        build_small(f"coco:{train},{tmp_path / 'nope.json'}", "test")


def test_coco_files_with_different_classes_stop_a_run(tmp_path: Path):
    for name in ("a.jpg", "c.jpg"):
        (tmp_path / name).write_bytes(jpeg_bytes(image()))
    train = coco_json(tmp_path / "train.json", [(1, "a.jpg")], {1: [[16, 12, 16, 12, 1]]})
    val = coco_json(tmp_path / "val.json", [(7, "c.jpg")], {7: [[16, 12, 16, 12, 1]]}, categories=((1, "cat"),))
    code, text = _cli("run", "--results", tmp_path / "r", "--dataset", f"coco:{train},{val}", "--epochs", "1")
    assert code == 2 and "train and test splits disagree on the class list" in text
