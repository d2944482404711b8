"""The synthetic dataset is deterministic, varied, and honours the data contract."""
from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from harness.data import DatasetError, SyntheticConfig, SyntheticDataset, check_target
from harness.data.drawing import box_iou as _box_iou
from harness.data.synthetic import CLASS_NAMES, MAX_PAIR_IOU
from harness.data.transforms import Resize

SMALL = SyntheticConfig(train_images=12, val_images=4, test_images=8, seed=0)


def _digest(ds: SyntheticDataset, index: int) -> str:
    scene = ds.scene(index)
    return hashlib.sha256(scene.image.tobytes() + scene.boxes.tobytes() + scene.labels.tobytes()).hexdigest()


def test_same_seed_same_pixels_and_boxes():
    a, b = SyntheticDataset("train", SMALL), SyntheticDataset("train", SMALL, cache=False)
    for i in range(len(a)):
        assert np.array_equal(a.load_image(i), b.load_image(i))
        assert torch.equal(a.annotation(i)["boxes"], b.annotation(i)["boxes"])
        assert torch.equal(a.annotation(i)["labels"], b.annotation(i)["labels"])


def test_generation_order_does_not_matter():
    forward = SyntheticDataset("test", SMALL, cache=False)
    digests = [_digest(forward, i) for i in range(len(forward))]
    backward = SyntheticDataset("test", SMALL, cache=False)
    assert [_digest(backward, i) for i in reversed(range(len(backward)))] == digests[::-1]


@pytest.mark.slow
def test_identical_in_another_process():
    ds = SyntheticDataset("val", SMALL)
    code = (
        "import hashlib; from harness.data.synthetic import SyntheticConfig, SyntheticDataset; "
        "s = SyntheticDataset('val', SyntheticConfig(train_images=12, val_images=4, test_images=8)).scene(2); "
        "print(hashlib.sha256(s.image.tobytes() + s.boxes.tobytes() + s.labels.tobytes()).hexdigest())"
    )
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == _digest(ds, 2)


def test_seed_and_split_change_the_data():
    base = SyntheticDataset("train", SMALL)
    reseeded = SyntheticDataset("train", SyntheticConfig(train_images=12, seed=1))
    other_split = SyntheticDataset("test", SMALL)
    assert _digest(base, 0) != _digest(reseeded, 0)
    assert _digest(base, 0) != _digest(other_split, 0)


def test_contract_boxes_inside_and_non_degenerate():
    ds = SyntheticDataset("train", SMALL)
    assert ds.class_names == CLASS_NAMES and ds.num_classes >= 3
    seen = set()
    for i in range(len(ds)):
        image = ds.load_image(i)
        target = ds.annotation(i)
        check_target(target)
        h, w = image.shape[:2]
        assert image.dtype == np.uint8 and image.shape[2] == 3
        assert h == SMALL.image_size and 160 <= w <= 224
        assert target["orig_size"].tolist() == [h, w] and target["image_id"] == i
        boxes = target["boxes"].numpy()
        assert SMALL.min_objects <= len(boxes) <= SMALL.max_objects
        assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
        assert (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
        sides = np.concatenate([boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]])
        assert (sides >= 15).all() and (sides <= 100).all()
        assert np.array_equal(boxes, np.round(boxes))  # tight boxes on pixel edges
        for j in range(len(boxes)):
            others = np.delete(boxes, j, axis=0)
            if len(others):
                assert _box_iou(boxes[j], others).max() <= MAX_PAIR_IOU + 1e-6
        seen.update(target["labels"].tolist())
    assert seen == {1, 2, 3}


def test_objects_have_their_class_colour():
    """The box centre of a visible object is coloured in its class hue band (loosely: the dominant channel)."""
    ds = SyntheticDataset("train", SMALL)
    dominant = {1: 0, 2: 2, 3: 1}  # disc warm -> red, box cool -> blue, triangle green -> green
    hits = total = 0
    for i in range(len(ds)):
        scene = ds.scene(i)
        for box, label in zip(scene.boxes.astype(int), scene.labels):
            patch = scene.image[box[1] : box[3], box[0] : box[2]].reshape(-1, 3).astype(int)
            hits += int(np.bincount(patch.argmax(1), minlength=3).argmax() == dominant[int(label)])
            total += 1
    assert hits / total > 0.8


def test_getitem_applies_transforms_and_load_image_is_a_copy():
    ds = SyntheticDataset("val", SMALL, transforms=Resize(96, 200))
    image, target = ds[0]
    assert image.dtype == torch.float32 and image.shape[0] == 3 and image.shape[1] == 96
    assert target["size"].tolist() == list(image.shape[1:])
    ds.load_image(0)[:] = 0
    assert ds.load_image(0).any()


def test_bad_split_and_config():
    with pytest.raises(DatasetError, match="train, val, test"):
        SyntheticDataset("trainval")
    with pytest.raises(DatasetError, match="min_objects"):
        SyntheticConfig(min_objects=4, max_objects=2)
    with pytest.raises(IndexError):
        SyntheticDataset("val", SMALL).annotation(4)
