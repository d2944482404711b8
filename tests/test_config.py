import dataclasses

import pytest

from harness.config import (
    DETECTORS,
    ConfigError,
    build_config,
    config_keys,
    parse_set_options,
)
from harness.config.capabilities import rules_for


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
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.train.lr = 1.0  # type: ignore[misc]


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


# A valid value, different from the default, for the keys whose type alone does not give one (choices,
# paths, tuples, and values other keys constrain), written as on the command line (--set KEY=TEXT).
NEW_VALUE = {
    "detector": "fast", "profile": "paper", "device": "cpu",
    "data.dataset": "voc:/data/VOC2007", "data.train_split": "val", "data.test_split": "train",
    "model.backbone": "resnet18", "model.weights": "weights/backbone.pt", "model.pooler": "roi_align",
    "model.anchor_sizes": "16,48", "model.anchor_ratios": "1", "train.lr_steps": "0.5,0.9",
    "train.scheme": "alternating", "test.recall_counts": "5,50", "test.svd_ranks": "32,8",
    "proposals.source": "file", "proposals.file": "proposals.json", "proposals.mode": "quality",
    "proposals.cache_dir": "elsewhere/proposals", "proposals.test_timing": "cache",
    "rcnn.feature_layer": "pool5", "rcnn.cache_dtype": "float16", "rcnn.cache_dir": "elsewhere/features",
    "rcnn.classifier": "softmax", "rcnn.context_padding": "4", "data.class_names": "cat,dog",
    "rcnn.finetune_sampling": "image",
    "model.init": "pretrained-body", "model.frozen_bn": "true",
    "data.scales": "154,184", "test.recall_iou_counts": "100,200",
}
# keys another key's new value needs (proposals.source=file needs a file)
COMPANION = {"proposals.source": {"proposals.file": "proposals.json"},
             # read only with these (harness.config.capabilities refuses them otherwise)
             "train.box_stage_epochs": {"train.scheme": "stagewise"}, "test.svd_ranks": {"test.svd": "true"},
             "data.scales": {"detector": "fast"}}  # multi-scale is Fast R-CNN's


def _reader(key):
    """The first detector that reads ``key`` (with its companions); the others refuse it."""
    for d in DETECTORS:
        try:
            cfg = build_config(detector=d, overrides=COMPANION.get(key, {}))
        except ConfigError:
            continue
        if not any(r.action == "refuse" for r in rules_for(d, key, cfg)):
            return d
    raise AssertionError(f"no detector reads {key}")
# free text: no value of the right type is refused by the config (paths, split names, dataset specs and
# backbone names are checked where they are used)
FREE_TEXT = {"data.dataset", "data.train_split", "data.test_split", "model.backbone", "model.weights",
             "proposals.file", "proposals.cache_dir", "rcnn.cache_dir", "data.class_names"}


def _keys_listed_by_harness_config() -> list[str]:
    from typer.testing import CliRunner

    from harness.cli import app

    result = CliRunner().invoke(app, ["config"], env={"COLUMNS": "200"})  # no truncated keys
    assert result.exit_code == 0, result.output
    return [line.split("│")[1].strip() for line in result.output.splitlines() if line.startswith("│")]


def _get(cfg, key):
    for part in key.split("."):
        cfg = getattr(cfg, part)
    return cfg


def _new_text(key, tp, default) -> str:
    if key in NEW_VALUE:
        return NEW_VALUE[key]
    if tp is bool:
        return str(not default).lower()
    if tp in (int, int | None):
        return "3" if default is None else str(default + 1)
    if tp in (float, float | None):
        return "5.0" if default is None else repr(default / 2)
    raise AssertionError(f"{key} ({tp}): add a valid non-default value to NEW_VALUE")


def _expected(tp, text):
    """What ``--set KEY=TEXT`` must put in the config, parsed here independently of the config's converter."""
    if tp in (bool, bool | None):
        return {"true": True, "false": False}[text]
    if tp in (tuple[int, ...], tuple[float, ...], tuple[str, ...]):
        item = {tuple[int, ...]: int, tuple[float, ...]: float, tuple[str, ...]: str}[tp]
        return tuple(item(v) for v in text.split(","))
    if tp in (int, int | None):
        return int(text)
    if tp in (float, float | None):
        return float(text)
    return text


def _invalid_text(key, tp) -> str:
    if tp is bool:
        return "maybe"
    if tp in (int, int | None, tuple[int, ...]):
        return "1.5"
    if tp in (float, float | None, tuple[float, ...]):
        return "1,x" if tp == tuple[float, ...] else "x"
    return "no-such-choice"  # a str key with a fixed set of choices


def test_every_key_of_harness_config_is_settable_and_checked():
    keys = config_keys()
    listed = _keys_listed_by_harness_config()
    assert listed == list(keys)  # `harness config` lists exactly the settable keys
    for key in listed:
        # a detector that reads the key (the others refuse it: harness.config.capabilities)
        detector = _reader(key)
        defaults = build_config(detector=detector)
        tp, default = keys[key], _get(defaults, key)
        text = _new_text(key, tp, default)
        items = [f"{key}={text}"] + [f"{k}={v}" for k, v in COMPANION.get(key, {}).items()]
        cfg = build_config(detector=detector, overrides=parse_set_options(items))  # the --set path of every command
        value = _get(cfg, key)
        assert value != default, (key, value)
        assert value == _expected(tp, text), (key, value, text)
        if key not in FREE_TEXT:
            with pytest.raises(ConfigError, match=key.split(".")[-1]):
                build_config(detector=detector, overrides=parse_set_options([f"{key}={_invalid_text(key, tp)}"]))
    assert FREE_TEXT <= set(keys) and set(NEW_VALUE) <= set(keys)  # no stale entries


@pytest.mark.parametrize("profile, overrides, init", [
    ("cpu", {}, "pretrained"),  # the cpu profile starts from the built-in pre-training (README Pre-training)
    ("cpu", {"model.backbone": "resnet18"}, "pretrained"),
    ("cpu", {"model.backbone": "resnet50"}, "random"),  # the built-in pre-training covers tiny and resnet18 only
    ("cpu", {"model.weights": "w.pt"}, "random"),  # a weights file wins; init is ignored
    ("cpu", {"model.init": "random"}, "random"),
    ("cpu", {"model.init": "pretrained-body"}, "pretrained-body"),
    ("paper", {}, "random"),  # the paper profile expects ImageNet weights (--weights)
    ("paper", {"model.backbone": "tiny"}, "random"),
])
def test_default_init_is_the_built_in_pretraining_at_cpu_profile(profile, overrides, init):
    for detector in ("faster", "fast", "rcnn"):
        assert build_config(detector=detector, profile=profile, overrides=overrides).model.init == init
