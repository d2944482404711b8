"""Bad dataset and CLI input (issue 9, points 1, 2 and 8), on real broken files.

Every case of the README's "Bad input" table is here: either ``harness``
prints one ``error: ...`` line naming the file and exits 2 (never a
traceback), or it logs a warning and goes on. Images are real files written by
OpenCV and then damaged; see tests/dirty_data.py.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest
from dirty_data import (
    add_voc_image,
    coco_json,
    exif_rotated_jpeg,
    image,
    jpeg_bytes,
    voc_run,
    voc_xml,
    write_voc,
    write_yolo,
    yolo_line,
)
from typer.testing import CliRunner

from harness.cli import app
from harness.config import TrainConfig
from harness.data import DatasetError, VOCDataset, build_dataset
from harness.data.imageio import jpeg_is_complete, read_rgb
from harness.train.engine import _batches, epoch_loader

runner = CliRunner()


def _invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(app, [str(a) for a in args])
    text = " ".join(result.output.split())  # rich wraps long lines
    assert "Traceback" not in text
    return result.exit_code, text


def _png(path: Path, pixels: np.ndarray) -> bytes:
    cv2.imwrite(str(path), pixels)
    return path.read_bytes()


# ------------------------------------------------------------------ one image file


@pytest.mark.parametrize(
    "damage, message",
    [
        (lambda data: data[: len(data) // 2], "truncated or corrupt JPEG"),
        (lambda data: data[:-2], "truncated or corrupt JPEG"),  # only the end marker lost
        (lambda data: b"this is a text file, not a picture\n", "cannot decode image"),
        (lambda data: b"", "is empty"),
    ],
)
def test_unreadable_images_are_errors_naming_the_file(tmp_path: Path, damage, message: str):
    path = tmp_path / "photo.jpg"
    path.write_bytes(damage(jpeg_bytes(image())))
    with pytest.raises(DatasetError, match=message) as err:
        read_rgb(path, dataset="voc:x/train")
    assert str(path) in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(DatasetError, match=r"missing\.jpg is missing"):
        read_rgb(tmp_path / "missing.jpg", dataset="voc:x/train")


def test_gray_rgba_and_16_bit_become_8_bit_rgb(tmp_path: Path):
    cv2.imwrite(str(tmp_path / "g.jpg"), np.full((6, 8), 100, np.uint8))
    gray = read_rgb(tmp_path / "g.jpg", dataset="d")
    assert gray.shape == (6, 8, 3) and gray.dtype == np.uint8 and (np.abs(gray.astype(int) - 100) <= 1).all()
    bgra = np.zeros((6, 8, 4), np.uint8)
    bgra[..., 2], bgra[..., 3] = 200, 0  # red, fully transparent
    _png(tmp_path / "rgba.png", bgra)
    assert read_rgb(tmp_path / "rgba.png", dataset="d")[0, 0].tolist() == [200, 0, 0]  # alpha dropped
    _png(tmp_path / "deep.png", np.full((6, 8), 40000, np.uint16))
    deep = read_rgb(tmp_path / "deep.png", dataset="d")
    assert deep.dtype == np.uint8 and deep[0, 0].tolist() == [40000 // 256] * 3


def test_exif_orientation_is_ignored_so_boxes_stay_on_the_stored_grid(tmp_path: Path):
    pixels = image(48, 64)
    (tmp_path / "rot.jpg").write_bytes(exif_rotated_jpeg(pixels, orientation=6))
    (tmp_path / "plain.jpg").write_bytes(jpeg_bytes(pixels))
    assert cv2.imread(str(tmp_path / "rot.jpg")).shape[:2] == (64, 48)  # what plain OpenCV would do
    rotated, plain = read_rgb(tmp_path / "rot.jpg", dataset="d"), read_rgb(tmp_path / "plain.jpg", dataset="d")
    assert rotated.shape == (48, 64, 3) and np.array_equal(rotated, plain)


def test_jpeg_end_check_skips_exif_and_allows_trailing_data():
    data = exif_rotated_jpeg(image())
    assert jpeg_is_complete(data) and jpeg_is_complete(data + b"\x00" * 10 + b"ftypmp42 appended video")
    assert not jpeg_is_complete(data[:-2]) and not jpeg_is_complete(data[:200])


# ------------------------------------------------------------------ annotations (warnings, dataset goes on)


def test_box_problems_are_dropped_or_clipped_with_warnings(tmp_path: Path, caplog):
    root = write_voc(tmp_path / "voc", n_train=1, n_test=1)
    objects = [("cat", 10, 10, 10, 20), ("cat", 30, 40, 40, 20),  # xmax == xmin; ymax < ymin
               ("dog", 50, 5, 90, 30), ("dog", 100, 60, 120, 80), ("cat", 2, 2, 12, 12)]  # partly / wholly outside
    add_voc_image(root, "boxes", jpeg_bytes(image()), objects)
    with caplog.at_level(logging.WARNING):
        ds = VOCDataset(root, "trainval")
    log = caplog.text
    assert log.count("dropping degenerate") == 2 and "boxes.xml" in log
    assert "clipping dog box (50.0, 5.0, 90.0, 30.0) to the 64x48 image" in log
    assert "dropping dog box (100.0, 60.0, 120.0, 80.0) lying outside the 64x48 image" in log
    boxes = ds.annotation(1)["boxes"]
    assert boxes.tolist() == [[49.0, 4.0, 64.0, 30.0], [1.0, 1.0, 12.0, 12.0]]


def test_unknown_classes_listed_with_counts_and_empty_xml_kept(tmp_path: Path, caplog):
    root = write_voc(tmp_path / "voc", n_train=2, n_test=1)
    add_voc_image(root, "birds", jpeg_bytes(image()), [("bird", 2, 2, 9, 9)] * 3 + [("cow", 2, 2, 9, 9)])
    add_voc_image(root, "nothing", jpeg_bytes(image()), [])
    with caplog.at_level(logging.WARNING):
        ds = VOCDataset(root, "trainval", class_names=["cat", "dog"])
    assert "dropped 4 objects of classes outside class_names: 'bird' (3), 'cow' (1)" in caplog.text
    assert "2 of 4 images have no (usable) objects" in caplog.text  # 'birds' after dropping, 'nothing'
    assert len(ds) == 4 and ds.annotation(3)["boxes"].shape == (0, 4)


def test_size_swapped_annotation_warns_about_exif(tmp_path: Path, caplog):
    root = write_voc(tmp_path / "voc", n_train=1, n_test=1)
    add_voc_image(root, "portrait", exif_rotated_jpeg(image(48, 64)), size=(64, 48))  # annotated rotated view
    ds = VOCDataset(root, "trainval")
    with caplog.at_level(logging.WARNING):
        assert ds.load_image(1).shape == (48, 64, 3)
    assert "width and height swapped: an EXIF-rotated photo" in caplog.text and "portrait.jpg" in caplog.text


# ------------------------------------------------------------------ through the CLI


def test_dirty_but_usable_voc_trains_with_warnings(tmp_path: Path, caplog):
    root = write_voc(tmp_path / "voc", n_train=2, n_test=1)
    add_voc_image(root, "gray", _png(tmp_path / "g.png", cv2.cvtColor(image(), cv2.COLOR_BGR2GRAY)),
                  filename="gray.png")
    add_voc_image(root, "rgba", _png(tmp_path / "a.png", cv2.cvtColor(image(), cv2.COLOR_BGR2BGRA)),
                  filename="rgba.png")
    add_voc_image(root, "deep", _png(tmp_path / "d.png", image().astype(np.uint16) * 257), filename="deep.png")
    add_voc_image(root, "exif", exif_rotated_jpeg(image()))
    add_voc_image(root, "empty", jpeg_bytes(image()), [])
    add_voc_image(root, "bad_boxes", jpeg_bytes(image()), [("cat", 5, 5, 5, 9), ("dog", 40, 20, 80, 44)])
    with caplog.at_level(logging.WARNING):  # (the CLI prints them on stderr; pytest captures them here)
        code, text = _invoke("run", "--results", tmp_path / "results", *voc_run(root))
    assert code == 0, text
    for warning in ("no (usable) objects", "dropping degenerate", "clipping dog box"):
        assert warning in caplog.text
    (record,) = [json.loads(x) for x in (tmp_path / "results" / "runs.jsonl").read_text().splitlines()]
    assert record["status"] == "ok" and record["dataset_info"]["train"]["images"] == 8


def test_missing_image_fails_before_training(tmp_path: Path):
    root = write_voc(tmp_path / "voc")
    add_voc_image(root, "gone", None)
    code, text = _invoke("run", "--results", tmp_path / "r", *voc_run(root))
    assert code == 2 and "error:" in text and "gone.jpg is missing" in text and "remove its id" in text
    (record,) = [json.loads(x) for x in (tmp_path / "r" / "runs.jsonl").read_text().splitlines()]
    assert record["status"] == "failed" and "train_s" not in record["timing"]
    code, text = _invoke("datasets", f"voc:{root}")
    assert code == 2 and "gone.jpg is missing" in text


def test_corrupt_image_found_mid_training_fails_the_run_naming_it(tmp_path: Path):
    root = write_voc(tmp_path / "voc")
    bad = add_voc_image(root, "broken", jpeg_bytes(image())[:300])
    code, text = _invoke("run", "--results", tmp_path / "r", *voc_run(root))
    assert code == 2 and f"image {bad} is a truncated or corrupt JPEG" in text
    (record,) = [json.loads(x) for x in (tmp_path / "r" / "runs.jsonl").read_text().splitlines()]
    assert record["status"] == "failed" and "broken.jpg" in record["reason"]
    code, text = _invoke("datasets", f"voc:{root}", "--check-images")
    assert code == 2 and "unreadable:" in text and "broken.jpg" in text and "1 unreadable image" in text
    code, _ = _invoke("datasets", f"voc:{write_voc(tmp_path / 'clean')}", "--check-images")
    assert code == 0


@pytest.mark.slow
def test_worker_errors_keep_their_one_line_message(tmp_path: Path):
    root = write_voc(tmp_path / "voc", n_train=0, n_test=0)
    bad = add_voc_image(root, "broken", b"GIF89a not really")
    ds = build_dataset(f"voc:{root}", "trainval", min_size=48, max_size=64)
    loader = epoch_loader(ds, TrainConfig(images_per_batch=1), seed=0, epoch=0, workers=1)
    with pytest.raises(DatasetError) as err:
        list(_batches(loader))
    assert str(err.value) == f"voc:voc/trainval: cannot decode image {bad} (corrupt, or not an image file)"


def test_bad_xml_and_empty_split_exit_2(tmp_path: Path):
    root = write_voc(tmp_path / "voc")
    (root / "Annotations" / "t1.xml").write_text("<annotation><object><name>cat</name>")
    for command in (["datasets", f"voc:{root}"], ["run", "--results", tmp_path / "r", *voc_run(root)]):
        code, text = _invoke(*command)
        assert code == 2 and "cannot parse annotation file" in text and "t1.xml" in text
    empty = write_voc(tmp_path / "empty")
    (empty / "ImageSets" / "Main" / "test.txt").write_text("\n")
    code, text = _invoke("run", "--results", tmp_path / "r2", *voc_run(empty))
    assert code == 2 and "the test split voc:empty/test is empty" in text


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d.pop("annotations"), "the top level is missing key(s) annotations"),
        (lambda d: d["images"][0].pop("width"), "an images entry is missing key(s) width"),
        (lambda d: d["annotations"][0].update(image_id=99), "annotation 1 refers to unknown image id 99"),
        (lambda d: d["images"][0].update(id="seven"), "malformed COCO JSON"),
    ],
)
def test_bad_coco_json_exit_2(tmp_path: Path, edit, message: str):
    (tmp_path / "a.jpg").write_bytes(jpeg_bytes(image()))
    data = {"images": [{"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [2, 2, 10, 10]}],
            "categories": [{"id": 1, "name": "cat"}]}
    edit(data)
    (tmp_path / "instances.json").write_text(json.dumps(data))
    code, text = _invoke("datasets", f"coco:{tmp_path / 'instances.json'}")
    assert code == 2 and "error:" in text and message in text and "instances.json" in text


# ------------------------------------------------------------------ non-finite numbers (issue 20, item 2)


@pytest.mark.parametrize(
    "tag, value, message",
    [
        ("ymin", "nan", "object 2 (cat) <ymin> is 'nan'"),
        ("xmax", "inf", "object 2 (cat) <xmax> is 'inf'"),
        ("xmin", "-Infinity", "object 2 (cat) <xmin> is '-Infinity'"),
        ("width", "inf", "<size><width> is 'inf'"),
        ("height", "NaN", "<size><height> is 'NaN'"),
        ("ymin", "abc", "bad number in object 2 (cat) <ymin>: 'abc'"),
    ],
)
def test_non_finite_voc_numbers_are_errors_naming_file_and_object(tmp_path: Path, tag: str, value: str,
                                                                   message: str):
    root = write_voc(tmp_path / "voc", n_train=2, n_test=1)
    cat = dict(zip(("xmin", "ymin", "xmax", "ymax"), (17, 13, 32, 24)))
    size = {"height": 48, "width": 64}
    (cat if tag in cat else size)[tag] = value
    objects = [("dog", 40, 20, 60, 44), ("cat", *cat.values())]
    (root / "Annotations" / "t1.xml").write_text(voc_xml("t1.jpg", (size["height"], size["width"]), objects))
    for command in (["datasets", f"voc:{root}"], ["run", "--results", tmp_path / "r", *voc_run(root)]):
        code, text = _invoke(*command)
        assert code == 2 and "error:" in text and "t1.xml" in text and message in text, text


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d["annotations"][1]["bbox"].__setitem__(2, float("nan")), "annotation 2 has bbox [39, 19, nan, 25]"),
        (lambda d: d["annotations"][0]["bbox"].__setitem__(0, float("inf")), "annotation 1 has bbox [inf, 12,"),
        (lambda d: d["annotations"][0].update(area=float("-inf")), "annotation 1 has area -inf"),
        (lambda d: d["images"][1].update(width=float("inf")), "image 2 width is inf"),
        (lambda d: d["images"][0].update(height=float("nan")), "image 1 height is nan"),
    ],
)
def test_non_finite_coco_numbers_are_errors(tmp_path: Path, edit, message: str):
    for name in ("a.jpg", "b.jpg"):
        (tmp_path / name).write_bytes(jpeg_bytes(image()))
    path = coco_json(tmp_path / "instances.json", [(1, "a.jpg"), (2, "b.jpg")],
                     {1: [[16, 12, 16, 12, 1]], 2: [[39, 19, 21, 25, 2]]})
    data = json.loads(path.read_text())
    edit(data)
    path.write_text(json.dumps(data))  # Python writes NaN / Infinity, and its json module reads them back
    assert "NaN" in path.read_text() or "Infinity" in path.read_text()
    code, text = _invoke("datasets", f"coco:{path}")
    assert code == 2 and "error:" in text and "instances.json" in text and message in text, text
    assert "every number in an annotation must be finite" in text or "expected a finite number" in text


# ------------------------------------------------------------------ YOLO label lines


@pytest.mark.parametrize(
    "line, message",
    [
        ("0 0.5 0.5 0.2", "expected 5 fields 'class cx cy w h', got 4"),
        ("0 0.5 0.5 0.2 0.2 0.9", "expected 5 fields 'class cx cy w h', got 6"),
        ("0 0.5 half 0.2 0.2", "not a number in '0 0.5 half 0.2 0.2'"),
        ("0 0.5 nan 0.2 0.2", "holds NaN or infinity"),
        ("1 inf 0.5 0.2 0.2", "holds NaN or infinity"),
        ("1.5 0.5 0.5 0.2 0.2", "class id '1.5' is not a whole number"),
    ],
)
def test_bad_yolo_lines_are_errors_naming_file_and_line(tmp_path: Path, line: str, message: str):
    root = write_yolo(tmp_path / "yolo", {"train": 2, "val": 1})
    (root / "labels" / "train" / "train1.txt").write_text(yolo_line(0, (16, 12, 32, 24)) + "\n\n" + line + "\n")
    code, text = _invoke("datasets", f"yolo:{root}")
    assert code == 2 and "error:" in text and f"{root / 'labels' / 'train' / 'train1.txt'}:3" in text
    assert message in text, text


def test_yolo_boxes_outside_degenerate_and_unknown_ids_are_warnings(tmp_path: Path, caplog):
    lines = ["0 0.9 0.5 0.5 0.5",  # reaches past the right edge: clipped
             "1 1.5 0.5 0.2 0.2",  # wholly outside: dropped
             "0 0.5 0.5 0 0.2",    # zero width: dropped
             "7 0.5 0.5 0.2 0.2",  # class 7 of 2 names: dropped, listed
             "1 20 24 10 8"]       # pixels instead of fractions: dropped, with a hint
    root = write_yolo(tmp_path / "yolo", {"train": 1, "val": 1}, lines=lines)
    with caplog.at_level(logging.WARNING, logger="harness.data.yolo"):
        ds = build_dataset(f"yolo:{root}", "train", min_size=48, max_size=64)
    label = root / "labels" / "train" / "train0.txt"
    assert f"{label}:1: clipping box 0 0.9 0.5 0.5 0.5 to the 64x48 image" in caplog.text
    assert f"{label}:2: dropping box 1 1.5 0.5 0.2 0.2 lying outside the 64x48 image (values outside [0, 1]" \
        in caplog.text
    assert f"{label}:3: dropping degenerate box" in caplog.text
    assert f"dropped 1 boxes with class ids outside 0..1 (2 names from data.yaml): 7 (1, first at {label}:4)" \
        in caplog.text
    assert f"{label}:5: dropping box 1 20 24 10 8 lying outside" in caplog.text
    assert ds.annotation(0)["boxes"].tolist() == [[41.599998474121094, 12.0, 64.0, 36.0]]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--dataset", "coco:/no/such.json"], "COCO annotation file '/no/such.json' does not exist"),
        (["--dataset", "synthetic:big"], "'synthetic' takes no argument"),
        (["--set", "train.lr"], "--set expects key=value"),
        (["--set", "train.epochs=0"], "invalid value for train.epochs"),
        (["--set", "model.anchor_sizes=a,b"], "expected float"),
        (["--device", "tpu"], "tpu"),
    ],
)
def test_more_bad_cli_input_exits_2(tmp_path: Path, args: list[str], message: str):
    code, text = _invoke("run", "--results", tmp_path, *args)
    assert code == 2 and message in text
    assert not (tmp_path / "runs.jsonl").exists()
