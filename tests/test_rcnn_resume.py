"""An R-CNN run interrupted in its feature stage resumes: fine-tuning is not repeated, the cached
features of the images already done are reused, and the final detector equals an uninterrupted run's."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import harness.train.rcnn_features as rcnn_features
from harness.cli import app
from harness.train.rcnn import MODEL_FILE

runner = CliRunner()
RUN = ["run", "--detector", "rcnn", "--epochs", "2", "--set", "data.synthetic.train_images=4",
       "--set", "data.synthetic.test_images=1", "--set", "data.min_size=96", "--set", "data.max_size=128",
       "--set", "test.warmup_images=0", "--set", "proposals.max_proposals=60", "--set", "rcnn.crop_size=32"]


def _invoke(results: Path, cache: Path, *extra: str):
    return runner.invoke(app, [*RUN, "--results", str(results), "--set", f"rcnn.cache_dir={cache}", *extra])


def _records(results: Path) -> list[dict]:
    return [json.loads(line) for line in (results / "runs.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_interrupted_feature_stage_resumes_and_matches(tmp_path, monkeypatch):
    reference = _invoke(tmp_path / "ref", tmp_path / "ref-cache")
    assert reference.exit_code == 0, reference.output
    (ref,) = _records(tmp_path / "ref")

    real, calls = rcnn_features._extract_one, []

    def stop_after_two(*args, **kwargs):
        if len(calls) == 2:
            raise KeyboardInterrupt("test")
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(rcnn_features, "_extract_one", stop_after_two)
    results, cache = tmp_path / "run", tmp_path / "cache"
    stopped = _invoke(results, cache)
    assert stopped.exit_code == 130
    (first,) = _records(results)
    assert first["status"] == "interrupted"
    monkeypatch.setattr(rcnn_features, "_extract_one", real)

    resumed = _invoke(results, cache, "--resume", first["run_id"])
    assert resumed.exit_code == 0, resumed.output
    second = _records(results)[-1]
    assert second["status"] == "ok" and second["resumed_from_epoch"] == 2  # fine-tuning was finished
    assert second["timing"]["train_iters"] == ref["timing"]["train_iters"]
    features = second["disk"]["feature_cache"]
    assert features["entries_reused"] == 2 and features["entries_computed"] == 2
    final = torch.load(results / first["run_id"] / MODEL_FILE, weights_only=True)["model"]
    expected = torch.load(tmp_path / "ref" / ref["run_id"] / MODEL_FILE, weights_only=True)["model"]
    different = [k for k in expected if not torch.equal(final[k], expected[k])]
    assert not different, different[:5]
    assert second["metrics"]["map50_area"] == pytest.approx(ref["metrics"]["map50_area"])
