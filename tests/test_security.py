"""Security (issue 9, point 7): no code from files, no paths out of the dataset root.

A "checkpoint" or "weights" file whose pickle would run code (here: create a
marker file) is refused by ``weights_only=True`` loading, and the marker never
appears. Image paths from annotation files (VOC split ids and ``<filename>``,
COCO ``file_name``) cannot leave the dataset folder. The report's escaping of
data strings is tested in tests/report (a class named ``<script>...``).
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from dirty_data import TINY_RUN, add_voc_image, image, jpeg_bytes, write_voc
from typer.testing import CliRunner

from detectors.backbones import build_backbone, load_state_dict_file
from harness.cli import app
from harness.data import COCODataset, DatasetError, VOCDataset, build_dataset
from harness.run.checkpoint import CHECKPOINT_FILE, CheckpointError, load_checkpoint


class _Payload:
    """Unpickling this calls ``Path.touch(marker)``: stands in for arbitrary code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "pwned"


def test_weights_file_with_code_is_refused(tmp_path: Path, marker: Path):
    evil = tmp_path / "weights.pth"
    torch.save({"body.0.weight": _Payload(marker)}, evil)
    body = build_backbone("tiny").body
    with pytest.raises(ValueError, match="refusing to load .*weights.pth.*pickled Python objects"):
        load_state_dict_file(body, evil)
    plain_pickle = tmp_path / "plain.pkl"  # an old-style pickle, not a torch zip file
    plain_pickle.write_bytes(pickle.dumps({"w": _Payload(marker)}, protocol=2))
    with pytest.raises(ValueError, match="refusing"):
        load_state_dict_file(body, plain_pickle)
    assert not marker.exists()


def test_cli_weights_with_code_exit_2_without_running_it(tmp_path: Path, marker: Path):
    evil = tmp_path / "weights.pth"
    torch.save({"body.0.weight": _Payload(marker)}, evil)
    result = CliRunner().invoke(app, ["run", "--results", str(tmp_path / "r"), "--weights", str(evil), *TINY_RUN])
    assert result.exit_code == 2, result.output
    assert "refusing to load" in " ".join(result.output.split()) and "Traceback" not in result.output
    assert not marker.exists()


def test_checkpoint_with_code_is_refused(tmp_path: Path, marker: Path):
    path = tmp_path / CHECKPOINT_FILE
    torch.save({"format": 1, "epoch": 1, "iterations": 1, "model": {}, "optimizer": {}, "scheduler": {},
                "rng": {"python": _Payload(marker)}, "config": {}}, path)
    with pytest.raises(CheckpointError, match="refusing to load .*pickled Python objects"):
        load_checkpoint(path)
    assert not marker.exists()


def test_voc_paths_cannot_escape_the_root(tmp_path: Path):
    root = write_voc(tmp_path / "voc")
    (root / "ImageSets" / "Main" / "evil.txt").write_text("../../../../etc/passwd\n")
    with pytest.raises(DatasetError, match=r"refusing file name '\.\./\.\./\.\./\.\./etc/passwd'"):
        VOCDataset(root, "evil")
    add_voc_image(root, "x", None, filename="../../../../etc/passwd", split="trainval")
    with pytest.raises(DatasetError, match="refusing file name"):
        VOCDataset(root, "trainval")


@pytest.mark.parametrize("file_name", ["../../etc/passwd", "/etc/passwd", "sub/../../secret.jpg", ""])
def test_coco_file_name_cannot_escape_the_images_folder(tmp_path: Path, file_name: str):
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / "a.jpg").write_bytes(jpeg_bytes(image()))
    data = {"images": [{"id": 1, "file_name": file_name, "width": 64, "height": 48}],
            "annotations": [], "categories": [{"id": 1, "name": "cat"}]}
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    with pytest.raises(DatasetError, match="refusing image file_name"):
        COCODataset(path, tmp_path / "images")
    with pytest.raises(DatasetError, match="refusing"):
        build_dataset(f"coco:{path}:{tmp_path / 'images'}", "all", min_size=48, max_size=64)
