"""Weights load completely, or the run says exactly what did not (issue 20, item 1).

Real files made here: a torchvision ``resnet50()`` / ``resnet18()`` state dict
(random init, ``weights=None``: nothing is downloaded), and the project's own
``{body, box_head}`` layout.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from dirty_data import TINY_RUN
from torch import nn
from torchvision import models
from typer.testing import CliRunner

from detectors.backbones import build_backbone
from detectors.weights import WeightsError
from harness.cli import app
from harness.run.init_record import init_kind, init_label


@pytest.fixture(scope="module")
def resnet50_file(tmp_path_factory) -> tuple[Path, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    state = models.resnet50(weights=None).state_dict()
    path = tmp_path_factory.mktemp("weights") / "resnet50.pth"
    torch.save(state, path)
    return path, state


def _parts_state(parts) -> dict[str, torch.Tensor]:
    return nn.ModuleDict({"body": parts.body, "box_head": parts.box_head}).state_dict()


def test_torchvision_resnet50_fills_every_body_and_head_tensor(resnet50_file):
    path, state = resnet50_file
    parts = build_backbone("resnet50", weights=path)
    report = parts.weights_report
    # body = stem (conv1, bn1), layer1-3; head = layer4: every torchvision tensor but fc has its place
    places = {"conv1": parts.body[0][0], "bn1": parts.body[0][1], "layer1": parts.body[1],
              "layer2": parts.body[2], "layer3": parts.body[3], "layer4": parts.box_head[0]}
    expected = {k: v for k, v in state.items() if not k.startswith("fc.")}
    for key, value in expected.items():
        top, rest = key.split(".", 1)
        mine = places[top].state_dict().get(rest)
        if key.endswith("num_batches_tracked"):  # BatchNorm's step counter: frozen BN has none
            continue
        assert mine is not None and torch.equal(mine, value), key
    own = {k for k in _parts_state(parts) if not k.endswith("num_batches_tracked")}
    assert len(own) == report.required == report.loaded == 265
    assert report.missing == [] and report.mismatched == [] and report.unexpected == [] and not report.partial
    assert report.looks_like == "resnet50" and len(report.sha256) == 64
    assert sorted(report.skipped) == []  # fc is in the file with its own shape: nothing left out


def test_resnet50_file_into_resnet18_is_refused_naming_tensors_and_architecture(resnet50_file):
    path, _ = resnet50_file
    with pytest.raises(WeightsError) as err:
        build_backbone("resnet18", weights=path)
    msg = str(err.value)
    assert "does not fit backbone resnet18" in msg and "seems to hold resnet50" in msg
    assert "layer1.0.conv1.weight [64, 64, 1, 1] in the file vs [64, 64, 3, 3]" in msg
    assert "model.weights_partial=true" in msg


def test_partial_load_loads_what_fits_and_says_so(resnet50_file):
    path, state = resnet50_file
    parts = build_backbone("resnet18", weights=path, weights_partial=True)
    r = parts.weights_report
    assert r.partial and r.looks_like == "resnet50" and r.required == 100
    assert 0 < r.loaded < r.required and r.loaded + len(r.mismatched) + len(r.missing) == r.required
    assert torch.equal(parts.body[0][0].weight, state["conv1.weight"])  # the stem fits and is loaded
    rec = r.as_record()
    assert rec["partial"] is True and rec["loaded"] == r.loaded and rec["mismatched"] == len(r.mismatched)
    assert init_kind(rec) == "weights (partial)" and init_label(rec).endswith("resnet50.pth (partial)")


def test_resnet34_file_into_resnet18_is_refused_although_every_shape_fits(tmp_path):
    """resnet34 holds every resnet18 name with the same shape: only its extra blocks give it away."""
    path = tmp_path / "resnet34.pth"
    torch.save(models.resnet34(weights=None).state_dict(), path)
    with pytest.raises(WeightsError, match=r"100 of 100 .* belong to no resnet18 layer .* seems to hold resnet34"):
        build_backbone("resnet18", weights=path)


def test_own_layout_under_a_model_key_and_classifier_left_out(tmp_path):
    source = build_backbone("tiny")
    path = tmp_path / "tiny.pth"
    torch.save({"model": _parts_state(source)}, path)
    report = build_backbone("tiny", weights=path).weights_report
    assert report.complete and report.loaded == report.required == 39 and report.looks_like == "tiny"
    # a resnet18 body + head in the backbone's own names, under "state_dict", with a 5-class classifier
    r18 = build_backbone("resnet18")
    path = tmp_path / "r18.pth"
    torch.save({"state_dict": {**_parts_state(r18), "fc.weight": torch.zeros(5, 512), "fc.bias": torch.zeros(5)}},
               path)
    parts = build_backbone("resnet18", weights=path)
    assert parts.weights_report.loaded == 100 and parts.weights_report.complete
    assert torch.equal(parts.box_head[0][1].conv2.weight, r18.box_head[0][1].conv2.weight)
    # an incomplete own file: one head tensor removed
    state = _parts_state(source)
    del state["box_head.3.weight"]
    torch.save(state, tmp_path / "cut.pth")
    with pytest.raises(WeightsError, match=r"1 missing from the file \(box_head\.3\.weight\).*matches none of the known"):
        build_backbone("tiny", weights=tmp_path / "cut.pth")


def test_cli_refuses_then_records_a_partial_load(tmp_path, resnet50_file):
    path, _ = resnet50_file
    args = ["run", "--backbone", "resnet18", "--weights", str(path), "--results", str(tmp_path), *TINY_RUN,
            "--epochs", "1", "--set", "data.synthetic.train_images=2"]
    result = CliRunner().invoke(app, args)
    out = " ".join(result.output.split())
    assert result.exit_code == 2, result.output
    assert "error: " in out and "resnet50" in out and "layer1.0.conv1.weight" in out
    assert "Traceback" not in result.output
    result = CliRunner().invoke(app, [*args, "--set", "model.weights_partial=true"])
    assert result.exit_code == 0, result.output
    rec = [json.loads(line) for line in (tmp_path / "runs.jsonl").read_text().splitlines()][-1]
    assert rec["status"] == "ok" and rec["config"]["model"]["weights_partial"] is True
    init = rec["init"]
    assert init["kind"] == "weights" and init["partial"] is True and init["looks_like"] == "resnet50"
    assert init["required"] == 100 and 0 < init["loaded"] < 100 and init["mismatched"] > 0
    assert init["sha256"] == __import__("hashlib").sha256(path.read_bytes()).hexdigest()


def test_report_reads_old_and_new_init():
    from harness.report.records import record_row

    old = record_row({"run_id": "a", "init": "weights:x.pth"}, "runs.jsonl", 1)
    new = record_row({"run_id": "b", "init": {"kind": "weights", "file": "x.pth", "loaded": 3, "partial": True}},
                     "runs.jsonl", 2)
    rnd = record_row({"run_id": "c", "init": "random"}, "runs.jsonl", 3)
    assert (old["init"], old["init_kind"]) == ("weights:x.pth", "weights")
    assert (new["init"], new["init_kind"]) == ("weights:x.pth (partial)", "weights (partial)")
    assert (rnd["init"], rnd["init_kind"]) == ("random", "random")
