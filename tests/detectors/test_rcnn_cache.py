"""R-CNN's on-disk feature cache: round trip, integrity, free space, reuse across runs."""
import shutil
from collections import namedtuple

import pytest
import torch
from rcnn_fixtures import tiny_dataset, tiny_rcnn

from harness.config import ConfigError
from harness.train.feature_cache import FeatureCache, FeatureCacheError
from harness.train.rcnn import train_rcnn, unflipped
from harness.train.rcnn_features import extract_features, open_caches

KEY = {"checkpoint_sha256": "abc", "layer": "fc7"}


@pytest.mark.parametrize("dtype, itemsize", [("float32", 4), ("float16", 2)])
def test_round_trip_file_size_is_n_times_dim_times_bytes(tmp_path, dtype, itemsize):
    cache = FeatureCache(tmp_path, KEY, name="fc7", dim=24, dtype=dtype)
    cache.prepare()
    features = torch.randn(17, 24)
    written = cache.write(5, features, {"boxes": [[0, 0, 1, 1]] * 17, "num_gt": 2})
    assert written == 17 * 24 * itemsize == cache.entry_bytes(5)
    assert (cache.dir / "0000005.feat").stat().st_size == 17 * 24 * itemsize
    back, meta = cache.read(5)
    assert back.dtype == torch.float32 and back.shape == (17, 24)
    tolerance = {"atol": 1e-2, "rtol": 1e-3} if dtype == "float16" else {"atol": 0, "rtol": 0}
    torch.testing.assert_close(back, features, **tolerance)
    assert meta["num_gt"] == 2 and meta["n"] == 17 and meta["dtype"] == dtype
    assert cache.meta(4) is None and cache.entry_bytes(4) == 0
    empty = cache.write(6, torch.zeros(0, 24), {})
    assert empty == 0 and cache.read(6)[0].shape == (0, 24)


def test_the_key_names_the_folder(tmp_path):
    a = FeatureCache(tmp_path, KEY, name="fc7", dim=4)
    b = FeatureCache(tmp_path, {**KEY, "checkpoint_sha256": "abd"}, name="fc7", dim=4)
    assert a.dir != b.dir and a.dir == FeatureCache(tmp_path, dict(KEY), name="fc7", dim=4).dir


@pytest.mark.parametrize("damage", ["truncate", "flip_byte", "no_sidecar"])
def test_a_torn_or_corrupted_entry_is_invalid(tmp_path, damage):
    cache = FeatureCache(tmp_path, KEY, name="fc7", dim=8)
    cache.prepare()
    cache.write(0, torch.randn(10, 8), {})
    feat, side = cache.dir / "0000000.feat", cache.dir / "0000000.json"
    data = bytearray(feat.read_bytes())
    if damage == "truncate":
        feat.write_bytes(data[:-7])
    elif damage == "flip_byte":
        data[13] ^= 0xFF
        feat.write_bytes(data)
    else:
        side.unlink()
    assert cache.meta(0) is None
    with pytest.raises(FeatureCacheError, match="missing or corrupted"):
        cache.read(0)


Usage = namedtuple("Usage", "total used free")


def test_free_space_check_fails_clearly_before_writing(tmp_path, monkeypatch):
    cache = FeatureCache(tmp_path, KEY, name="fc7", dim=256)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10**6, 10**6 - 5000, 5000))
    with pytest.raises(FeatureCacheError) as err:
        cache.check_space(2000)
    message = str(err.value)
    assert "2,048,000 bytes needed" in message and "5,000 bytes free" in message and str(cache.dir) in message
    with pytest.raises(FeatureCacheError):
        cache.write(0, torch.zeros(10, 256), {})  # 10 KB > 5 KB: refused
    assert not list(cache.dir.glob("*.feat"))  # nothing partial was left


def test_the_training_stage_turns_a_full_disk_into_a_clear_config_error(tmp_path, monkeypatch):
    model, cfg = tiny_rcnn(**{"train.epochs": 1, "train.checkpoint": False})
    dataset = tiny_dataset(images=2)
    monkeypatch.setattr(shutil, "disk_usage", lambda path: Usage(10**6, 10**6 - 100, 100))
    with pytest.raises(ConfigError, match="bytes needed.*rcnn.cache_dtype=float16"):
        train_rcnn(model, dataset, cfg, device=torch.device("cpu"), cache_root=tmp_path)


def test_second_run_reuses_the_cache_without_recomputing(tmp_path):
    model, cfg = tiny_rcnn()
    model.eval()
    dataset = unflipped(tiny_dataset(images=3), cfg)
    calls = []
    features = model.network.features

    def counting(crops, layers):
        calls.append(crops.shape[0])
        return features(crops, layers)

    model.network.features = counting
    first = extract_features(model, dataset, open_caches(model, cfg, dataset, tmp_path), device=torch.device("cpu"))
    assert first.computed == 3 and first.reused == 0 and sum(calls) == first.regions > 0
    assert first.bytes_written["features"] == first.regions * 256 * 4
    calls.clear()
    caches = open_caches(model, cfg, dataset, tmp_path)  # a new run: same weights, same key
    second = extract_features(model, dataset, caches, device=torch.device("cpu"))
    assert second.reused == 3 and second.computed == 0 and calls == []
    assert second.bytes_written == {"features": 0, "bbox": 0}
    assert second.regression_examples == first.regression_examples > 0
    # a torn entry is recomputed, alone
    (caches.features.dir / "0000001.feat").write_bytes(b"torn")
    third = extract_features(model, dataset, open_caches(model, cfg, dataset, tmp_path), device=torch.device("cpu"))
    assert third.computed == 1 and third.reused == 2 and len(calls) == 1
    # other weights, other key: nothing is reused
    with torch.no_grad():
        next(model.network.parameters()).add_(1.0)
    assert open_caches(model, cfg, dataset, tmp_path).features.dir != caches.features.dir
