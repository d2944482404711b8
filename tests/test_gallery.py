"""gallery.json (issue 19 item 4): which images, how boxes are judged, and what a run writes."""
from __future__ import annotations

import base64
import io
import json

from PIL import Image
from typer.testing import CliRunner

from harness.cli import app
from harness.evaluation.gallery import GALLERY_FILE, match_boxes, pick_images

runner = CliRunner()


def test_pick_images_is_seeded_and_keeps_its_choice_on_a_superset():
    keys = [f"img_{i:03d}.jpg" for i in range(40)]
    chosen = pick_images(keys, 8, seed=0)
    assert len(set(chosen)) == 8 and chosen == pick_images(keys, 8, seed=0)
    assert pick_images(keys, 8, seed=1) != chosen
    # the same images whatever else the split holds: ranked by key, not by position
    more = ["other.jpg", *keys, "zzz.jpg"]
    picked = {more[i] for i in pick_images(more, 8, seed=0)}
    chosen_keys = {keys[i] for i in chosen}
    assert picked <= chosen_keys | {"other.jpg", "zzz.jpg"} and len(picked & chosen_keys) >= 6
    assert pick_images(keys[:3], 8, seed=0) and len(pick_images(keys[:3], 8, seed=0)) == 3


def test_match_boxes_greedy_by_score_same_class_iou_half():
    gts = [{"box": [0, 0, 10, 10], "class": "a"}, {"box": [20, 20, 30, 30], "class": "b"},
           {"box": [40, 40, 50, 50], "class": "a"}]
    dets = [
        {"box": [1, 1, 10, 10], "class": "a", "score": 0.6},  # IoU 0.81 with gt 0, but a better one comes first
        {"box": [0, 0, 10, 10], "class": "a", "score": 0.9},  # takes gt 0
        {"box": [20, 20, 30, 30], "class": "a", "score": 0.8},  # right place, wrong class
        {"box": [40, 40, 55, 55], "class": "a", "score": 0.7},  # IoU 100/225 < 0.5 with gt 2
    ]
    tp, found = match_boxes(dets, gts)
    assert tp == [False, True, False, False]
    assert found == [True, False, False]
    assert match_boxes([], gts) == ([], [False, False, False])
    assert match_boxes(dets[:1], []) == ([False], [])


def test_a_run_writes_its_gallery(tmp_path, tiny_run_args):
    result = runner.invoke(app, ["run", "--results", str(tmp_path), *tiny_run_args])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "runs.jsonl").read_text())
    assert record["gallery"]["file"] == GALLERY_FILE and record["gallery"]["images"] == 2  # 2 test images
    gallery = json.loads((tmp_path / record["run_id"] / GALLERY_FILE).read_text())
    assert {im["key"] for im in gallery["images"]} == {"image 0", "image 1"}
    classes = set(record["dataset_info"]["classes"])
    for im in gallery["images"]:
        with Image.open(io.BytesIO(base64.b64decode(im["thumb_jpeg"]))) as thumb:
            thumb.load()
            assert thumb.format == "JPEG" and max(thumb.size) <= 320
            assert abs(thumb.size[0] - im["width"] * im["thumb_scale"]) <= 1
        assert im["gt"] and {g["class"] for g in im["gt"]} <= classes
        assert all(d["class"] in classes and 0 <= d["score"] <= 1 for d in im["detections"])
    assert record["dataset_info"]["category_ids"] == [1, 2, 3]


def test_no_gallery_when_switched_off(tmp_path, tiny_run_args):
    result = runner.invoke(app, ["run", "--results", str(tmp_path), *tiny_run_args,
                                 "--set", "test.gallery_images=0"])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "runs.jsonl").read_text())
    assert record["gallery"] is None and not (tmp_path / record["run_id"] / GALLERY_FILE).exists()


def test_gallery_size_is_bounded(tmp_path, tiny_run_args):
    result = runner.invoke(app, ["run", "--results", str(tmp_path), *tiny_run_args, "--set", "test.gallery_images=13"])
    assert result.exit_code == 2 and "test.gallery_images" in result.output
