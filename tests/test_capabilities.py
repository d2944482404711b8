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
