"""``synthetic-hard``: deterministic, 12 look-alike classes, 3..10 objects, tight boxes; usable by a run."""
from __future__ import annotations

import functools
import hashlib
import json
from dataclasses import replace

import numpy as np
import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.data import (
    DatasetError,
    SyntheticHardConfig,
    SyntheticHardDataset,
    available_splits,
    build_dataset,
    check_target,
    parse_dataset_spec,
)
from harness.data.drawing import box_iou, place_objects
from harness.data.synthetic_hard import (
    CLASS_NAMES,
    MAX_PAIR_IOU,
    SIMILAR_PAIRS,
    _shape_mask,
    _texture,
)

runner = CliRunner()
SMALL = SyntheticHardConfig(train_images=16, val_images=2, test_images=4, image_size=160)


def _digest(ds: SyntheticHardDataset, index: int) -> str:
    scene = ds.scene(index)
    return hashlib.sha256(scene.image.tobytes() + scene.boxes.tobytes() + scene.labels.tobytes()).hexdigest()


def test_same_config_same_pixels_other_seed_or_split_differs():
    a, b = SyntheticHardDataset("train", SMALL), SyntheticHardDataset("train", SMALL, cache=False)
    assert [_digest(a, i) for i in range(4)] == [_digest(b, i) for i in reversed(range(4))][::-1]
    reseeded = SyntheticHardDataset("train", SyntheticHardConfig(image_size=160, seed=1))
    assert _digest(a, 0) != _digest(reseeded, 0)
    assert _digest(a, 0) != _digest(SyntheticHardDataset("test", SMALL), 0)


def test_defaults_meet_the_benchmark_sizes():
    cfg = SyntheticHardConfig()
    assert cfg.test_images >= 200 and (cfg.min_objects, cfg.max_objects) == (3, 10)
    assert len(SyntheticHardDataset("test")) == cfg.test_images


def test_contract_classes_counts_and_boxes_inside():
    ds = SyntheticHardDataset("train", SMALL)
    assert ds.class_names == CLASS_NAMES and ds.num_classes - 1 >= 10
    seen, counts, small, large = set(), [], 0, 0
    for i in range(len(ds)):
        image, target = ds.load_image(i), ds.annotation(i)
        check_target(target)
        h, w = image.shape[:2]
        assert image.dtype == np.uint8 and h == SMALL.image_size
        boxes = target["boxes"].numpy()
        counts.append(len(boxes))
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
        assert (boxes[:, 2:] > boxes[:, :2]).all() and np.array_equal(boxes, np.round(boxes))
        for j in range(len(boxes)):
            others = np.delete(boxes, j, axis=0)
            assert len(others) == 0 or box_iou(boxes[j], others).max() <= MAX_PAIR_IOU + 1e-6
        sides = np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])) / h
        small, large = small + int((sides < 0.25).sum()), large + int((sides > 0.38).sum())
        seen.update(target["labels"].tolist())
    assert min(counts) >= 3 and max(counts) <= 10 and max(counts) - min(counts) >= 4
    assert seen == set(range(1, len(CLASS_NAMES)))  # every class drawn in 16 images
    assert small > 0 and large > 0


def _relative_sizes(config: SyntheticHardConfig) -> np.ndarray:
    ds = SyntheticHardDataset("train", config)
    boxes = np.concatenate([ds.annotation(i)["boxes"].numpy() for i in range(len(ds))])
    return np.sqrt((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])) / config.image_size


def test_object_size_keys_set_the_range():
    """min/max_object_size bound each box's sqrt(area) / image height (occlusion only shrinks a box)."""
    fixed = _relative_sizes(replace(SMALL, min_object_size=0.3, max_object_size=0.3))
    assert fixed.max() <= 0.3 + 2 / SMALL.image_size and np.median(fixed) > 0.27
    default = _relative_sizes(SMALL)
    assert default.max() > 0.4 and default.max() <= SMALL.max_object_size + 2 / SMALL.image_size
    with pytest.raises(DatasetError, match="min_object_size <= max_object_size"):
        SyntheticHardConfig(min_object_size=0.5, max_object_size=0.2)
    with pytest.raises(DatasetError, match="0 < min_object_size"):
        SyntheticHardConfig(min_object_size=0.0)


def test_boxes_are_the_tight_extent_of_each_silhouette():
    """Each class's silhouette, placed without occlusion in a solid colour, fills exactly its box's edges."""
    rng = np.random.default_rng(3)
    for label in range(1, len(CLASS_NAMES)):
        image = np.zeros((120, 120, 3), np.float32)

        def sample(r, label=label):
            side = int(r.integers(8, 40))
            mask = _shape_mask(r, label, side, int(r.integers(8, 40)))
            return label, int(r.integers(0, 120 - mask.shape[0])), int(r.integers(0, 120 - mask.shape[1])), mask

        colours = iter(range(1, 100))
        boxes, _ = place_objects(rng, image, 4, sample, lambda r, lab, h, w: np.full((h, w, 3), next(colours), np.float32),
                                 max_pair_iou=0.0, min_visible=1.0)
        assert len(boxes) >= 2
        for k, box in enumerate(boxes, start=1):
            ys, xs = np.nonzero(image[..., 0] == k)
            assert box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], CLASS_NAMES[label]


def _silhouette_iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / (a | b).sum())


def test_similar_pairs_differ_in_one_cue():
    """Each pair shares its colour and nearly its silhouette; yet the two classes never render identically."""
    assert len(SIMILAR_PAIRS) >= 5 and len({x for pair in SIMILAR_PAIRS for x in pair}) == 2 * len(SIMILAR_PAIRS)
    for a, b in SIMILAR_PAIRS:
        ma, mb = _shape_mask(np.random.default_rng(0), a, 48, 48), _shape_mask(np.random.default_rng(0), b, 48, 48)
        ta, tb = _texture(np.random.default_rng(1), a, 48, 48), _texture(np.random.default_rng(1), b, 48, 48)
        # the same draw gives both classes the same base colour: their mean colours are close
        assert np.abs(ta.reshape(-1, 3).max(0) - tb.reshape(-1, 3).max(0)).max() < 1.0, (a, b)
        assert _silhouette_iou(ma, mb) > 0.6, (CLASS_NAMES[a], CLASS_NAMES[b])
        assert not (np.array_equal(ma, mb) and np.array_equal(ta, tb)), (a, b)
    # unrelated classes look less alike: a rect against a star, a ring against a rect
    rect = _shape_mask(np.random.default_rng(0), 3, 48, 48)
    assert _silhouette_iou(rect, _shape_mask(np.random.default_rng(0), 10, 48, 48)) < 0.6
    assert _silhouette_iou(rect, _shape_mask(np.random.default_rng(0), 12, 48, 48)) < 0.6


def test_spec_parses_and_builds_with_its_own_config():
    assert parse_dataset_spec("synthetic-hard").kind == "synthetic-hard"
    assert str(parse_dataset_spec("Synthetic-Hard")) == "synthetic-hard"
    assert available_splits("synthetic-hard") == ["train", "val", "test"]
    with pytest.raises(DatasetError, match="takes no argument"):
        parse_dataset_spec("synthetic-hard:x")
    ds = build_dataset("synthetic-hard", "val", min_size=96, max_size=128, synthetic_hard=SMALL)
    image, target = ds[0]
    assert ds.name == "synthetic-hard/val" and len(ds) == 2 and image.shape[1] == 96
    assert target["labels"].max() <= 12


def test_datasets_command_describes_it(monkeypatch):
    small = functools.partial(SyntheticHardConfig, train_images=3, val_images=1, test_images=2, image_size=128)
    monkeypatch.setattr(SyntheticHardDataset, "default_config", small)
    result = runner.invoke(app, ["datasets", "synthetic-hard"])
    assert result.exit_code == 0, result.output
    for word in ("synthetic-hard/train", "synthetic-hard/test", "class octagon", "class ring", "boxes / image"):
        assert word in result.output


def test_one_epoch_tiny_run(tmp_path, tiny_run_args):
    args = [*tiny_run_args, "--set", "data.synthetic_hard.train_images=4", "--set", "data.synthetic_hard.test_images=2",
            "--set", "data.synthetic_hard.image_size=128"]
    result = runner.invoke(app, ["run", "--dataset", "synthetic-hard", "--results", str(tmp_path), *args])
    assert result.exit_code == 0, result.output
    rec = json.loads((tmp_path / "runs.jsonl").read_text().splitlines()[0])
    assert rec["status"] == "ok" and rec["dataset"] == "synthetic-hard"
    assert rec["config"]["data"]["synthetic_hard"]["image_size"] == 128
    assert len(rec["metrics"]["per_class"]) == len(CLASS_NAMES) - 1
