import pytest

from harness.config import (
    ConfigError,
    apply_overrides,
    build_config,
    config_keys,
    parse_set_options,
)


def test_defaults_are_the_cpu_profile():
    cfg = build_config()
    assert cfg.detector == "faster" and cfg.model.backbone == "tiny" and cfg.data.min_size == 192
    assert cfg.model.anchor_ratios == (0.5, 1.0, 2.0) and len(cfg.model.anchor_sizes) == 3


def test_paper_profile_uses_paper_scale():
    cfg = build_config(profile="paper")
    assert (cfg.data.min_size, cfg.data.max_size) == (600, 1000)
    assert cfg.model.anchor_sizes == (128.0, 256.0, 512.0) and cfg.model.backbone == "vgg16"


def test_dotted_overrides_are_converted():
    cfg = build_config(overrides=parse_set_options(
        ["train.lr=0.005", "model.anchor_sizes=16,32", "model.rpn_ignore_cross_boundary=false",
         "model.pooled_size=none", "data.synthetic.train_images=7"]))
    assert cfg.train.lr == 0.005 and cfg.model.anchor_sizes == (16.0, 32.0)
    assert cfg.model.rpn_ignore_cross_boundary is False and cfg.model.pooled_size is None
    assert cfg.data.synthetic.train_images == 7
    with pytest.raises(Exception):
        cfg.train.lr = 1.0  # frozen


@pytest.mark.parametrize(
    "item, message",
    [
        ("train.lrr=0.1", "unknown config key"),
        ("lr=0.1", "did you mean train.lr"),
        ("train.epochs=two", "expected int"),
        ("train.epochs=1.5", "expected int"),
        ("model.rpn_ignore_cross_boundary=maybe", "expected bool"),
        ("train.epochs=0", "invalid value for train.epochs"),
        ("model.pooler=max", "roi_pool or roi_align"),
    ],
)
def test_bad_overrides_are_clear_errors(item, message):
    with pytest.raises(ConfigError, match=message):
        build_config(overrides=parse_set_options([item]))


def test_set_needs_key_value():
    with pytest.raises(ConfigError, match="key=value"):
        parse_set_options(["train.lr"])


def test_unknown_detector():
    with pytest.raises(ConfigError, match="unknown detector"):
        build_config(detector="yolo")


def test_every_key_is_settable():
    cfg = build_config()
    for key in config_keys():
        apply_overrides(cfg, {})  # no-op
        assert key.count(".") >= 0
    assert "model.anchor_sizes" in config_keys() and "data.synthetic.seed" in config_keys()
