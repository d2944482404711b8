"""``harness predict`` (issue 19 item 6): a tiny run first, then its detector on a folder of images."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from dirty_data import TINY_RUN
from PIL import Image
from typer.testing import CliRunner

from harness.cli import app
from harness.data.synthetic import SyntheticConfig, SyntheticDataset
from harness.evaluation.drawing import COLOURS, Box, draw_boxes

runner = CliRunner()


def _run(results: Path, *extra: str, detector: str = "faster") -> dict:
    result = runner.invoke(app, ["run", "--detector", detector, "--results", str(results), *TINY_RUN,
                                 "--epochs", "1", *extra])
    assert result.exit_code == 0, result.output
    return json.loads((results / "runs.jsonl").read_text().splitlines()[-1])


def _images(folder: Path) -> list[Path]:
    """Three synthetic pictures (one in a subfolder, one PNG) and a broken file."""
    ds = SyntheticDataset("test", SyntheticConfig(test_images=3))
    (folder / "sub").mkdir(parents=True)
    paths = [folder / "a.jpg", folder / "sub" / "b.jpg", folder / "c.png"]
    for i, path in enumerate(paths):
        Image.fromarray(ds.load_image(i)).save(path)
    (folder / "sub" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    (folder / "notes.txt").write_text("not an image, not looked at")
    return paths


@pytest.fixture(scope="module")
def faster_run(tmp_path_factory) -> tuple[Path, dict]:
    results = tmp_path_factory.mktemp("predict_run")
    return results, _run(results)


def test_predict_on_a_folder(faster_run, tmp_path):
    results, record = faster_run
    paths = _images(tmp_path / "images")
    out = tmp_path / "out"
    result = runner.invoke(app, ["predict", record["run_id"], str(tmp_path / "images"), "--results", str(results),
                                 "--out", str(out), "--score-thresh", "0.0"])
    assert result.exit_code == 0, result.output
    assert "skipped" in result.output and "broken.jpg" in result.output  # warned, the rest processed
    for name in ("a.jpg", "sub/b.jpg", "c.jpg"):
        with Image.open(out / name) as im:
            im.load()
            assert im.format == "JPEG"
    with Image.open(paths[0]) as original, Image.open(out / "a.jpg") as annotated:
        assert original.size == annotated.size
    detections = json.loads((out / "detections.json").read_text())
    assert detections, "a score threshold of 0 keeps every detection of the model"
    classes = record["dataset_info"]["classes"]
    for d in detections:
        assert set(d) == {"file_name", "image_id", "category_id", "category_name", "bbox", "score"}
        assert d["category_name"] == classes[d["category_id"] - 1]
        _, _, w, h = d["bbox"]
        assert w >= 0 and h >= 0 and 0 <= d["score"] <= 1
    assert {Path(d["file_name"]).name for d in detections} <= {"a.jpg", "b.jpg", "c.png"}


def test_score_threshold_filters(faster_run, tmp_path):
    results, record = faster_run
    _images(tmp_path / "images")
    counts = []
    for thresh in ("0.0", "0.2", "1.0"):
        out = tmp_path / f"out{thresh}"
        res = runner.invoke(app, ["predict", record["run_id"], str(tmp_path / "images" / "a.jpg"),
                                  "--results", str(results), "--out", str(out), "--score-thresh", thresh])
        assert res.exit_code == 0, res.output
        dets = json.loads((out / "detections.json").read_text())
        assert all(d["score"] >= float(thresh) for d in dets)
        counts.append(len(dets))
    assert counts[0] >= counts[1] >= counts[2] == 0


@pytest.mark.parametrize(("args", "message"), [
    (["no-such-run"], "no run 'no-such-run'"),
    (["RUN", "missing.jpg"], "no such image file or folder"),
    (["RUN", "--score-thresh", "2"], "--score-thresh"),
])
def test_bad_input_is_exit_2(faster_run, tmp_path, args, message):
    results, record = faster_run
    _images(tmp_path / "images")
    args = [record["run_id"] if a == "RUN" else a for a in args]
    if len(args) == 1 or args[1].startswith("--"):
        args.insert(1, str(tmp_path / "images"))
    result = runner.invoke(app, ["predict", *args, "--results", str(results), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "error:" in result.output and message in result.output


def test_only_unreadable_images_is_exit_2(faster_run, tmp_path):
    results, record = faster_run
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nothing")
    result = runner.invoke(app, ["predict", record["run_id"], str(bad), "--results", str(results),
                                 "--out", str(tmp_path / "o")])
    assert result.exit_code == 2 and "could be read" in result.output


def test_run_without_checkpoint_is_exit_2(tmp_path):
    record = _run(tmp_path / "results", "--set", "train.checkpoint=false")
    _images(tmp_path / "images")
    result = runner.invoke(app, ["predict", record["run_id"], str(tmp_path / "images"),
                                 "--results", str(tmp_path / "results")])
    assert result.exit_code == 2 and "has no checkpoint" in result.output


def test_help_explains():
    result = runner.invoke(app, ["predict", "--help"])
    assert result.exit_code == 0
    text = " ".join(result.output.replace("│", " ").split())  # rich wraps the help into a box
    for words in ("RUN_ID", "--score-thresh", "--out", "selective search", "detections.json", "COCO"):
        assert words in text


def test_draw_boxes_colours_and_dashes():
    pixels = np.zeros((60, 80, 3), dtype=np.uint8)
    drawn = np.asarray(draw_boxes(pixels, [Box((10, 10, 50, 40), "", "tp"), Box((5, 45, 75, 58), "", "missed")]))
    assert tuple(drawn[25, 10]) == COLOURS["tp"]  # a solid edge
    edge = [tuple(px) for px in drawn[45, 5:75]]
    assert COLOURS["missed"] in edge and (0, 0, 0) in edge  # dashed: colour and gaps along the edge
    assert not pixels.any()  # the input is not drawn on


@pytest.mark.parametrize("detector", ["fast", "rcnn"])
def test_data_side_proposals_are_computed_through_the_cache(tmp_path, detector):
    """Fast R-CNN and R-CNN (its whole detector: SVMs and box regressors) on new images."""
    cache = tmp_path / "cache"
    record = _run(tmp_path / "results", "--set", f"proposals.cache_dir={cache}", "--set", "proposals.workers=0",
                  "--set", "proposals.max_proposals=100", detector=detector)
    before = set(cache.rglob("*.prop"))
    _images(tmp_path / "images")
    result = runner.invoke(app, ["predict", record["run_id"], str(tmp_path / "images"),
                                 "--results", str(tmp_path / "results"), "--out", str(tmp_path / "out"),
                                 "--score-thresh", "0"])
    assert result.exit_code == 0, result.output
    assert len(set(cache.rglob("*.prop")) - before) == 3  # one new entry per readable image
    assert (tmp_path / "out" / "detections.json").is_file() and (tmp_path / "out" / "c.jpg").is_file()
