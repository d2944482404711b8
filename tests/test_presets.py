"""harness reproduce: every preset resolves to valid configs at both scales."""
import json

import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.config.presets import PRESETS, resolve

runner = CliRunner()


def test_at_least_ten_presets_with_unique_ids():
    assert len(PRESETS) >= 10 and len({p.id for p in PRESETS}) == len(PRESETS)


@pytest.mark.parametrize("preset", PRESETS, ids=[p.id for p in PRESETS])
@pytest.mark.parametrize("scale", ["cpu", "paper"])
def test_every_preset_resolves(preset, scale):
    runs = resolve(preset, scale=scale, seeds=2)
    assert len(runs) == 2 * len(preset.rows)
    assert len({point.key for _, point in runs}) == len(runs)  # every run distinct
    for row, point in runs:
        assert point.config.detector == row.detector
        if scale == "paper":
            assert point.config.data.min_size == 600 and point.config.model.backbone == "vgg16"
        else:
            assert point.config.model.backbone == "tiny"


def test_presets_name_published_tables():
    import csv
    from pathlib import Path

    import harness

    with (Path(harness.__file__).parent / "reference" / "published.csv").open() as f:
        tables = {(r["paper"], r["table"]) for r in csv.DictReader(f)}
    for p in PRESETS:
        if p.table.startswith("Table"):
            assert (p.paper, p.table) in tables, p.id


def test_reproduce_list_and_dry_run():
    result = runner.invoke(app, ["reproduce", "--list"])
    assert result.exit_code == 0 and "fast-table4" in result.output
    result = runner.invoke(app, ["reproduce", "faster-table9", "--dry-run", "--seeds", "2"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    assert len(rows) == 8
    assert sorted({r["config"]["model"]["rpn_box_weight"] for r in rows}) == [0.01, 0.1, 1.0, 10.0]
    assert runner.invoke(app, ["reproduce", "no-such-table"]).exit_code == 2
