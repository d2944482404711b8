"""An option left at its default never overrides a profile: every command, given only --profile paper
(or --scale paper), resolves the paper profile's config (issue 20, item 3).

The commands run in-process through typer; the function each would call is replaced by one that
captures the config it was given, so nothing is trained or timed.
"""
import json

import pytest
from typer.testing import CliRunner

import harness.bench.faster
import harness.bench.proposals
import harness.bench.rcnn
import harness.bench.scaling
import harness.cli.proposals
import harness.run.runner
import harness.run.sweep
from harness.cli import app

runner = CliRunner()


class Captured(Exception):
    """Raised by the stand-ins once they hold the config: the command stops there."""


def check_paper(cfg) -> None:
    assert cfg.profile == "paper"
    assert cfg.model.backbone == "vgg16"
    assert (cfg.data.min_size, cfg.data.max_size) == (600, 1000)
    assert tuple(cfg.model.anchor_sizes) == (128.0, 256.0, 512.0)
    assert cfg.train.lr == 0.001


@pytest.fixture
def capture(monkeypatch):
    seen = []

    def stand_in(module, name, pick):
        def fake(*args, **kwargs):
            seen.append(pick(*args, **kwargs))
            raise Captured

        monkeypatch.setattr(module, name, fake)

    return seen, stand_in


@pytest.mark.parametrize("command, module, name, pick", [
    (["run"], harness.run.runner, "execute", lambda cfg, **kw: cfg),
    (["run", "--detector", "fast"], harness.run.runner, "execute", lambda cfg, **kw: cfg),
    (["run", "--detector", "rcnn"], harness.run.runner, "execute", lambda cfg, **kw: cfg),
    (["sweep", "--grid", "train.epochs=1"], harness.run.sweep, "run_sweep", lambda points, **kw: points[0].config),
    (["bench"], harness.bench.faster, "run_bench", lambda cfg, **kw: cfg),
    (["bench-rcnn"], harness.bench.rcnn, "run_rcnn_bench", lambda cfg, **kw: cfg),
    (["bench-scaling"], harness.bench.scaling, "run_scaling_bench", lambda cfg, **kw: cfg),
])
def test_paper_profile_alone_resolves_the_papers_config(tmp_path, capture, command, module, name, pick):
    seen, stand_in = capture
    stand_in(module, name, pick)
    result = runner.invoke(app, [*command, "--profile", "paper", "--results", str(tmp_path)])
    assert isinstance(result.exception, Captured), result.output
    check_paper(seen[0])


def test_bench_proposals_paper_profile(tmp_path, capture, monkeypatch):
    seen, stand_in = capture
    stand_in(harness.bench.proposals, "bench_proposals", lambda sets, params, **kw: params)
    configs = []
    real_setup = harness.cli.proposals.proposal_setup

    def setup(*args, **kwargs):
        cfg, sets = real_setup(*args, **kwargs)
        configs.append(cfg)
        return cfg, sets

    monkeypatch.setattr(harness.cli.proposals, "proposal_setup", setup)
    result = runner.invoke(app, ["bench-proposals", "--dataset", "synthetic", "--profile", "paper",
                                 "--results", str(tmp_path), "--limit", "1"])
    assert isinstance(result.exception, Captured), result.output
    check_paper(configs[0])
    assert seen[0].image_min_size is None  # the paper profile searches the image as on disk


def test_reproduce_paper_scale_alone(tmp_path):
    result = runner.invoke(app, ["reproduce", "faster-table8", "--scale", "paper", "--dry-run",
                                 "--results", str(tmp_path)])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert rows
    for row in rows:
        cfg = row["config"]
        assert cfg["profile"] == "paper" and cfg["model"]["backbone"] == "vgg16"
        assert (cfg["data"]["min_size"], cfg["data"]["max_size"]) == (600, 1000)
        assert cfg["train"]["lr"] == 0.001


def test_an_option_given_still_wins(tmp_path, capture):
    seen, stand_in = capture
    stand_in(harness.run.runner, "execute", lambda cfg, **kw: cfg)
    result = runner.invoke(app, ["run", "--profile", "paper", "--backbone", "resnet18", "--seed", "3",
                                 "--results", str(tmp_path)])
    assert isinstance(result.exception, Captured), result.output
    assert seen[0].model.backbone == "resnet18" and seen[0].seed == 3 and seen[0].data.min_size == 600
