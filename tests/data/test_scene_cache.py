"""The on-disk scene cache: a generated picture is drawn once per checkout, and never served stale."""
from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.data import (
    SyntheticConfig,
    SyntheticHardConfig,
    SyntheticHardDataset,
    scene_cache,
)
from harness.data.specs import build_dataset
from harness.data.synthetic import SyntheticDataset

SMALL = SyntheticHardConfig(train_images=4, val_images=1, test_images=2, image_size=160)


def _same(a, b) -> bool:
    return all(np.array_equal(x, y) and x.dtype == y.dtype for x, y in zip(a, b, strict=True))


def test_a_second_dataset_reads_the_scenes_the_first_drew(tmp_path, monkeypatch):
    drawn = SyntheticHardDataset("train", SMALL)  # no disk cache: the reference pictures
    first = SyntheticHardDataset("train", SMALL, disk_cache=tmp_path)
    assert all(_same(first.scene(i), drawn.scene(i)) for i in range(len(first)))
    files = sorted(tmp_path.rglob("*.npz"))
    assert [f.name for f in files] == [f"{i}.npz" for i in range(4)] and files[0].parent.name == "train"
    # a new instance (another run) draws nothing: the renderer is broken and the scenes still come back
    monkeypatch.setattr(SyntheticHardDataset, "render", lambda self, rng: pytest.fail("drew a cached scene"))
    second = SyntheticHardDataset("train", SMALL, disk_cache=tmp_path)
    assert all(_same(second.scene(i), drawn.scene(i)) for i in range(len(second)))


def test_the_key_follows_what_draws_the_picture_not_the_image_counts(tmp_path):
    key = scene_cache.scene_dir(tmp_path, "synthetic-hard", SMALL)
    # index i is the same picture whatever the split's size: a 200- and a 400-image config share files
    assert scene_cache.scene_dir(tmp_path, "synthetic-hard", replace(SMALL, train_images=400)) == key
    assert scene_cache.scene_dir(tmp_path, "synthetic-hard", replace(SMALL, seed=1)) != key
    assert scene_cache.scene_dir(tmp_path, "synthetic-hard", replace(SMALL, image_size=192)) != key
    assert scene_cache.scene_dir(tmp_path, "synthetic", SyntheticConfig()) != scene_cache.scene_dir(
        tmp_path, "synthetic-hard", SyntheticConfig())


def test_the_key_follows_the_generator_code(tmp_path, monkeypatch):
    before = scene_cache.scene_dir(tmp_path, "synthetic-hard", SMALL)
    monkeypatch.setattr(scene_cache, "code_digest", lambda: "an edited generator")
    assert scene_cache.scene_dir(tmp_path, "synthetic-hard", SMALL) != before


def test_a_file_that_does_not_load_is_drawn_again(tmp_path):
    reference = SyntheticHardDataset("test", SMALL).scene(1)
    SyntheticHardDataset("test", SMALL, disk_cache=tmp_path).scene(1)
    [path] = tmp_path.rglob("1.npz")
    path.write_bytes(path.read_bytes()[:100])  # a run killed mid-write would leave a temporary file, not this
    assert _same(SyntheticHardDataset("test", SMALL, disk_cache=tmp_path).scene(1), reference)
    assert _same(scene_cache.load(path, type(reference)), reference)  # and rewritten whole
    assert not list(tmp_path.rglob("*.tmp"))


def test_the_environment_sets_the_root_or_turns_it_off(tmp_path, monkeypatch):
    monkeypatch.setenv(scene_cache.ENV, str(tmp_path / "scenes"))
    ds = build_dataset("synthetic", "test", min_size=96, max_size=128, synthetic=SyntheticConfig(test_images=2))
    ds[0]
    assert len(list((tmp_path / "scenes").rglob("*.npz"))) == 1
    monkeypatch.setenv(scene_cache.ENV, "off")
    assert scene_cache.cache_root() is None
    monkeypatch.delenv(scene_cache.ENV)
    assert str(scene_cache.cache_root()) == "cache/data"


def test_a_run_from_cached_scenes_records_the_same_numbers(tmp_path, monkeypatch, tiny_run_args):
    """End to end: a run that draws (cache off), one that writes the cache, one that reads it: same metrics."""
    runner = CliRunner()
    metrics = []
    for i, root in enumerate(("off", str(tmp_path / "scenes"), str(tmp_path / "scenes"))):
        monkeypatch.setenv(scene_cache.ENV, root)
        result = runner.invoke(app, ["run", "--detector", "faster", *tiny_run_args,
                                     "--results", str(tmp_path / f"r{i}")])
        assert result.exit_code == 0, result.output
        record = json.loads((tmp_path / f"r{i}" / "runs.jsonl").read_text().splitlines()[-1])
        metrics.append(record["metrics"]["map50_voc07"])
        cache = record["dataset_info"]["scene_cache"]
        assert cache == "off" if root == "off" else cache.startswith(str(tmp_path / "scenes" / "synthetic-"))
    assert len(list((tmp_path / "scenes").rglob("*.npz"))) == 4 + 2  # the tiny run's train and test scenes
    assert metrics[0] == metrics[1] == metrics[2]


def test_the_plain_dataset_class_keeps_no_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    SyntheticDataset("train", SyntheticConfig(train_images=2)).scene(0)
    assert not list(tmp_path.rglob("*.npz"))
