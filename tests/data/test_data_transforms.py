"""Resize / flip move images and every box key exactly, without touching their inputs."""
from __future__ import annotations

import torch

from harness.data.base import make_target
from harness.data.transforms import Compose, RandomHorizontalFlip, Resize, resized_shape


def _sample(h: int, w: int, boxes: list[list[float]], proposals: list[list[float]] | None = None):
    image = torch.rand(3, h, w, generator=torch.Generator().manual_seed(0))
    target = make_target(boxes, [1] * len(boxes), image_id=0, orig_size=(h, w))
    if proposals is not None:
        target["proposals"] = torch.tensor(proposals, dtype=torch.float32)
    return image, target


def _snapshot(image, target):
    return image.clone(), {k: (v.clone() if torch.is_tensor(v) else v) for k, v in target.items()}


def _assert_unchanged(before, image, target):
    torch.testing.assert_close(image, before[0], rtol=0, atol=0)
    assert target.keys() == before[1].keys()
    for key, value in before[1].items():
        if torch.is_tensor(value):
            assert torch.equal(target[key], value), key
        else:
            assert target[key] == value


def test_resize_shorter_side_to_min_size():
    image, target = _sample(100, 200, [[10, 20, 30, 40]], proposals=[[0, 0, 200, 100], [2, 4, 6, 8]])
    before = _snapshot(image, target)
    out_image, out = Resize(50, 1000)(image, target)
    assert out_image.shape == (3, 50, 100)
    assert torch.equal(out["boxes"], torch.tensor([[5.0, 10.0, 15.0, 20.0]]))
    assert torch.equal(out["proposals"], torch.tensor([[0.0, 0.0, 100.0, 50.0], [1.0, 2.0, 3.0, 4.0]]))
    assert out["size"].tolist() == [50, 100] and out["size"].dtype == torch.int64
    assert out["orig_size"].tolist() == [100, 200]
    assert out["boxes"].dtype == torch.float32
    _assert_unchanged(before, image, target)


def test_resize_caps_longer_side_at_max_size():
    # scale 50/100 would make the width 200 > 150, so scale = 150/400 = 0.375; h = 37.5 -> 38.
    image, target = _sample(100, 400, [[40, 50, 80, 100]])
    out_image, out = Resize(50, 150)(image, target)
    assert out_image.shape == (3, 38, 150)
    # Boxes follow the realised per-axis ratios: x * 150/400, y * 38/100.
    assert torch.equal(out["boxes"], torch.tensor([[15.0, 19.0, 30.0, 38.0]]))
    assert out["size"].tolist() == [38, 150]


def test_resize_upscales_and_keeps_constant_image_constant():
    image = torch.full((3, 20, 30), 0.25)
    target = make_target([[1, 2, 3, 4]], [2], image_id=3, orig_size=(20, 30))
    out_image, out = Resize(60, 1000)(image, target)
    assert out_image.shape == (3, 60, 90)
    assert torch.allclose(out_image, torch.full_like(out_image, 0.25))
    assert torch.equal(out["boxes"], torch.tensor([[3.0, 6.0, 9.0, 12.0]]))
    assert out["labels"].tolist() == [2] and out["image_id"] == 3


def test_resized_shape_matches_papers_600_1000():
    assert resized_shape(375, 500, 600, 1000) == (600, 800)
    assert resized_shape(500, 353, 600, 1000) == (850, 600)
    assert resized_shape(300, 1000, 600, 1000) == (300, 1000)  # already at the cap: unchanged


def test_flip_moves_image_boxes_and_proposals_exactly():
    image, target = _sample(6, 10, [[1, 2, 4, 5], [0, 0, 10, 6]], proposals=[[2.5, 1, 3.5, 2]])
    before = _snapshot(image, target)
    out_image, out = RandomHorizontalFlip(p=1.0)(image, target)
    assert torch.equal(out_image, image.flip(-1))
    assert torch.equal(out_image[:, :, 9], image[:, :, 0])
    assert torch.equal(out["boxes"], torch.tensor([[6.0, 2.0, 9.0, 5.0], [0.0, 0.0, 10.0, 6.0]]))
    assert torch.equal(out["proposals"], torch.tensor([[6.5, 1.0, 7.5, 2.0]]))
    assert out["size"].tolist() == [6, 10]
    _assert_unchanged(before, image, target)


def test_flip_twice_is_identity():
    image, target = _sample(7, 13, [[1.5, 2, 4.25, 5], [3, 0, 13, 7]], proposals=[[0, 0, 1, 1]])
    flip = RandomHorizontalFlip(p=1.0)
    again_image, again = flip(*flip(image, target))
    assert torch.equal(again_image, image)
    assert torch.equal(again["boxes"], target["boxes"])
    assert torch.equal(again["proposals"], target["proposals"])


def test_flip_probability_zero_never_flips():
    image, target = _sample(4, 5, [[0, 0, 1, 1]])
    out_image, out = RandomHorizontalFlip(p=0.0, seed=1)(image, target)
    assert torch.equal(out_image, image) and torch.equal(out["boxes"], target["boxes"])
    assert out is not target


def test_flip_seeded_sequence_is_reproducible():
    image, target = _sample(4, 8, [[0, 0, 2, 2]])

    def pattern(seed: int) -> list[bool]:
        flip = RandomHorizontalFlip(p=0.5, seed=seed)
        return [flip(image, target)[1]["boxes"][0, 0].item() == 6.0 for _ in range(64)]

    assert pattern(3) == pattern(3)
    assert pattern(3) != pattern(4)
    assert 10 < sum(pattern(3)) < 54


def test_flip_accepts_generator():
    image, target = _sample(4, 8, [[0, 0, 2, 2]])
    a = RandomHorizontalFlip(0.5, seed=torch.Generator().manual_seed(9))
    b = RandomHorizontalFlip(0.5, seed=torch.Generator().manual_seed(9))
    assert [torch.equal(a(image, target)[0], b(image, target)[0]) for _ in range(16)] == [True] * 16


def test_compose_applies_in_order():
    image, target = _sample(100, 200, [[10, 20, 30, 40]])
    out_image, out = Compose([Resize(50, 1000), RandomHorizontalFlip(p=1.0)])(image, target)
    assert out_image.shape == (3, 50, 100)
    assert torch.equal(out["boxes"], torch.tensor([[85.0, 10.0, 95.0, 20.0]]))
