"""Selective search: boxes in the data contract, inside the image, deduplicated, deterministic, mapped back."""
import numpy as np
import pytest
import torch

from detectors.selective_search import (
    SelectiveSearchParams,
    search_scale,
    selective_search,
)


def _image(h: int = 96, w: int = 128, seed: int = 0) -> np.ndarray:
    """RGB uint8 with a few flat rectangles on noise: clear regions to group."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 40, size=(h, w, 3), dtype=np.uint8)
    for _ in range(4):
        x, y = rng.integers(0, w // 2), rng.integers(0, h // 2)
        image[y : y + h // 3, x : x + w // 3] = rng.integers(60, 255, size=3, dtype=np.uint8)
    return image


def test_boxes_follow_the_data_contract_and_stay_inside():
    image = _image()
    params = SelectiveSearchParams(image_min_size=None, max_proposals=50, box_min_size=3.0)
    boxes = selective_search(image, params)
    assert boxes.dtype == torch.float32 and boxes.ndim == 2 and boxes.shape[1] == 4
    assert 0 < boxes.shape[0] <= 50
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
    assert (boxes[:, 2] <= 128).all() and (boxes[:, 3] <= 96).all()
    widths, heights = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    assert (widths >= 3).all() and (heights >= 3).all()
    assert torch.unique(boxes, dim=0).shape[0] == boxes.shape[0]  # no duplicates


def test_deterministic_per_image():
    image, params = _image(seed=1), SelectiveSearchParams(image_min_size=None)
    assert torch.equal(selective_search(image, params), selective_search(image, params))


def test_downscaled_search_maps_boxes_back_to_the_original_frame():
    image = _image(192, 256, seed=2)
    params = SelectiveSearchParams(image_min_size=64, image_max_size=100)
    assert search_scale(192, 256, params) == pytest.approx(64 / 192)
    boxes = selective_search(image, params)
    assert (boxes[:, 2] <= 256).all() and (boxes[:, 3] <= 192).all()
    assert boxes[:, 2].max() > 100  # in original pixels, not the 64 x 85 search frame
    # never upscaled
    assert search_scale(32, 40, params) == 1.0


def test_quality_mode_runs_and_bad_input_is_refused():
    assert selective_search(_image(48, 64), SelectiveSearchParams(mode="quality", image_min_size=None)).shape[0] > 0
    with pytest.raises(ValueError, match="uint8"):
        selective_search(np.zeros((8, 8), np.uint8), SelectiveSearchParams())
    with pytest.raises(ValueError, match="mode"):
        SelectiveSearchParams(mode="slow")


def test_slug_changes_with_every_parameter(monkeypatch):
    base = SelectiveSearchParams()
    variants = [
        SelectiveSearchParams(mode="quality"),
        SelectiveSearchParams(image_min_size=128),
        SelectiveSearchParams(image_min_size=None),
        SelectiveSearchParams(image_max_size=400),
        SelectiveSearchParams(max_proposals=1000),
        SelectiveSearchParams(box_min_size=4.0),
    ]
    slugs = {base.slug(), *(v.slug() for v in variants)}
    assert len(slugs) == len(variants) + 1
    import cv2

    before = base.slug()
    monkeypatch.setattr(cv2, "__version__", "0.0.1")
    assert SelectiveSearchParams().slug() != before
