"""Non-finite numbers on the shared input paths (issue 20, item 2): external proposal files and ``--set``.

A NaN or an infinity parses as a float everywhere (``float("nan")``, JSON's
``NaN`` / ``Infinity``), so without a check it flows on silently: a NaN proposal
box matches nothing, a NaN score scrambles the ranking, ``train.lr=nan`` trains
nothing. Each is an error naming where it came from.
"""
from __future__ import annotations

import json
import math

import pytest
from dirty_data import TINY_RUN
from typer.testing import CliRunner

from harness.cli import app
from harness.config import ConfigError, build_config
from harness.proposals.external import ProposalFileError, load_proposal_file

runner = CliRunner()


def _file(tmp_path, images: dict) -> str:
    # json.dumps writes NaN / Infinity / -Infinity as JavaScript literals, as many tools do
    path = tmp_path / "proposals.json"
    path.write_text(json.dumps({"format": "rcnn-harness-proposals", "version": 1, "images": images}))
    return str(path)


@pytest.mark.parametrize("entry, message", [
    ({"boxes": [[0, 0, 5, 5], [1, 2, math.nan, 9]]}, (r"image 'img7': 1 boxes with a NaN or infinite coordinate, "
                                                      r"e\.g\. box 1 = \[1\.0, 2\.0, nan, 9\.0\]")),
    ({"boxes": [[0, 0, math.inf, 5]]}, r"image 'img7': 1 boxes with a NaN or infinite coordinate"),
    ({"boxes": [[-math.inf, 0, 4, 5]]}, r"image 'img7': 1 boxes .* box 0 = \[-inf"),
    ({"boxes": [[0, 0, 5, 5], [0, 0, 6, 6]], "scores": [0.5, math.nan]},
     r"image 'img7': 1 scores are NaN or infinite, e\.g\. score 1 = nan"),
    ({"boxes": [[0, 0, 5, 5]], "scores": [math.inf]}, r"image 'img7': 1 scores are NaN or infinite"),
])
def test_nonfinite_proposals_name_the_file_and_image(tmp_path, entry, message):
    path = _file(tmp_path, {"img1": {"boxes": [[0, 0, 3, 3]]}, "img7": entry})
    with pytest.raises(ProposalFileError, match=message) as err:
        load_proposal_file(path)
    assert str(err.value).startswith(path)


def test_cli_run_with_nan_proposal_file_exits_2(tmp_path):
    images = {f"train/{i}": {"boxes": [[0, 0, 20, 20]]} for i in range(6)}
    images["test/0"] = {"boxes": [[0, 0, 20, 20], [3, 3, 10, 10]], "scores": [1.0, math.nan]}
    path = _file(tmp_path, images)
    result = runner.invoke(app, ["run", "--detector", "fast", "--results", str(tmp_path / "r"), *TINY_RUN,
                                 "--set", "proposals.source=file", "--set", f"proposals.file={path}"])
    out = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert "error:" in out and "proposals.json: image 'test/0': 1 scores are NaN" in out
    assert "Traceback" not in result.output


@pytest.mark.parametrize("key, value", [
    ("train.lr", "nan"), ("train.lr", "inf"), ("train.lr", "-inf"), ("train.lr", "NaN"),
    ("train.grad_clip", "inf"), ("model.box_weight", "nan"), ("model.anchor_sizes", "32,nan,128"),
    ("data.flip_prob", "Infinity"),
])
def test_nonfinite_set_values_are_config_errors(key, value):
    shown = value.split(",")[1] if "," in value else value  # a list names its bad item
    with pytest.raises(ConfigError, match=rf"{key}: expected a finite number, got '{shown}'"):
        build_config(overrides={key: value})


def test_finite_values_still_pass():
    cfg = build_config(overrides={"train.lr": "1e-3", "model.anchor_sizes": "16,32", "train.grad_clip": "none"})
    assert cfg.train.lr == 1e-3 and cfg.model.anchor_sizes == (16.0, 32.0) and cfg.train.grad_clip is None


def test_cli_set_nan_exits_2(tmp_path):
    result = runner.invoke(app, ["run", "--results", str(tmp_path), "--set", "train.lr=nan", *TINY_RUN])
    assert result.exit_code == 2, result.output
    assert "error: train.lr: expected a finite number, got 'nan'" in " ".join(result.output.split())
    assert not (tmp_path / "runs.jsonl").exists()  # refused before anything ran
