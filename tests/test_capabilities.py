"""What a detector or scheme cannot do is refused at config time (exit 2, before any data or training),
never after a full training run; every (detector, scheme) pair of the fit table is accepted."""
import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.config import DETECTORS, build_config
from harness.run.runner import check_run
from harness.train.schemes import FIT

runner = CliRunner()
SCHEMES = ("joint", "alternating", "stagewise")


@pytest.mark.parametrize("detector, settings, message", [
    ("rcnn", ["test.svd=true"], "R-CNN runs its CNN on each warped region"),
    ("rcnn", ["train.scheme=alternating"], "4-step"),
    ("fast", ["train.scheme=alternating"], "4-step"),
    ("faster", ["train.scheme=stagewise"], "stage-wise"),
    ("rcnn", ["train.scheme=stagewise"], "stage-wise"),
])
def test_refused_before_any_work(tmp_path, detector, settings, message):
    args = ["run", "--detector", detector, "--results", str(tmp_path)]
    for s in settings:
        args += ["--set", s]
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output
    assert "error:" in result.output and message in result.output
    assert not (tmp_path / "runs.jsonl").exists()  # refused before a run started: nothing recorded


@pytest.mark.parametrize("detector", DETECTORS)
@pytest.mark.parametrize("scheme", SCHEMES)
def test_every_pair_of_the_fit_table_passes_the_check(detector, scheme):
    """The config's own validation and the fit table agree: a pair is buildable iff it has a fit function."""
    try:
        cfg = build_config(detector=detector, overrides={"train.scheme": scheme})
    except ValueError:
        assert (detector, scheme) not in FIT
        return
    assert (detector, scheme) in FIT
    check_run(cfg)


# --------------------------------------------------------------------------- #
# detector x option matrix (harness.config.capabilities)
# --------------------------------------------------------------------------- #
def _matrix():
    from test_config import COMPANION, NEW_VALUE, _new_text

    from harness.config import config_keys

    keys = config_keys()
    skip = {"detector", "profile", "train.scheme", "test.svd"}  # the method itself; the fit table; the svd pass
    for detector in DETECTORS:
        default = build_config(detector=detector)
        for key, tp in keys.items():
            if key in skip:
                continue
            value = default
            for part in key.split("."):
                value = getattr(value, part)
            text = NEW_VALUE.get(key) or _new_text(key, tp, value)
            if str(value).lower() == str(text).lower():
                text = {"fast": "quality"}.get(text, text)
            extra = COMPANION["proposals.source"] if key == "proposals.source" else {}  # a file to read
            yield pytest.param(detector, key, {key: text, **extra}, id=f"{detector}-{key}")


@pytest.mark.parametrize("detector, key, overrides", list(_matrix()))
def test_every_option_is_honoured_or_refused(detector, key, overrides):
    """A non-default value of every key, on every detector: refused (naming the key) where a rule says so,
    accepted everywhere else (honoured, or ignored and listed with its reason in RULES)."""
    from harness.config import ConfigError
    from harness.config.capabilities import check_capabilities, rules_for

    try:
        cfg = build_config(detector=detector, overrides=overrides)
        check_capabilities(cfg)
    except ConfigError as err:
        assert key in str(err), (detector, key, str(err))  # the message names the key
        base = build_config(detector=detector)
        assert any(r.action in ("refuse", "elsewhere") for r in rules_for(detector, key, base)), \
            (detector, key, str(err))
        return
    refusing = [r for r in rules_for(detector, key, cfg) if r.action == "refuse"]
    assert not refusing, (detector, key)


@pytest.mark.parametrize("detector, setting, message", [
    ("fast", "model.rpn_box_weight=2", "RPN"),
    ("rcnn", "model.anchor_sizes=16,32", "RPN"),
    ("fast", "model.anchor_ratios=1", "RPN"),
    ("faster", "rcnn.feature_layer=pool5", "rcnn.* configure R-CNN"),
    ("fast", "rcnn.classifier=softmax", "rcnn.* configure R-CNN"),
    ("rcnn", "model.cls_only=true", "rcnn.bbox_reg=false"),
    ("rcnn", "model.box_weight=2", "rcnn.bbox_reg"),
    ("rcnn", "train.amp=true", "float32"),
    ("faster", "proposals.max_proposals=100", "rpn_post_nms_top_n_test"),
    ("faster", "proposals.source=file", "from its RPN"),
    ("fast", "train.box_stage_epochs=2", "stagewise"),
    ("faster", "test.svd_ranks=8,4", "test.svd=true"),
])
def test_misleading_options_exit_2_before_any_work(tmp_path, tiny_run_args, detector, setting, message):
    # were it accepted, a tiny run: the test fails in seconds
    args = ["run", "--detector", detector, "--results", str(tmp_path), *tiny_run_args, "--set", setting]
    result = runner.invoke(app, args + (["--set", "proposals.file=p.json"] if "source=file" in setting else []))
    assert result.exit_code == 2, result.output
    assert "error:" in result.output and message in result.output and setting.split("=")[0] in result.output
    assert not (tmp_path / "runs.jsonl").exists()


def test_harmless_unread_options_and_profile_defaults_are_accepted():
    """Ignored keys (selective-search settings on the RPN detector) and any profile's defaults pass."""
    from harness.config.capabilities import check_capabilities

    check_capabilities(build_config(detector="faster", overrides={"proposals.mode": "quality",
                                                                  "proposals.cache_dir": "/tmp/x"}))
    # one tiny --set list for every detector (tests/dirty_data.py TINY_RUN): RPN / RoI speed knobs pass
    knobs = {"model.rpn_pre_nms_top_n_train": 300, "model.rpn_post_nms_top_n_train": 60, "model.roi_batch_size": 32}
    for det in DETECTORS:
        check_capabilities(build_config(detector=det, overrides=knobs))
    for det in DETECTORS:
        check_capabilities(build_config(detector=det, profile="paper"))
