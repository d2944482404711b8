"""`harness reproduce --all`: every preset into one folder; 3 seeds per row by default at cpu scale."""
import json

from typer.testing import CliRunner

from harness.cli import app
from harness.config.presets import PRESETS

runner = CliRunner()


def _dry_rows(args):
    result = runner.invoke(app, ["reproduce", *args, "--dry-run"])
    assert result.exit_code == 0, result.output
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


def test_all_lists_every_preset_row_with_three_seeds_at_cpu_scale():
    rows = _dry_rows(["--all"])
    assert {r["preset"] for r in rows} == {p.id for p in PRESETS}
    for preset in PRESETS:
        mine = [r for r in rows if r["preset"] == preset.id]
        assert len(mine) == 3 * len(preset.rows), preset.id
        for label in {r.label for r in preset.rows}:
            seeds = sorted(r["config"]["seed"] for r in mine if r["row"] == label)
            assert seeds == [0, 1, 2], (preset.id, label)


def test_paper_scale_defaults_to_one_seed_and_seeds_override():
    assert len(_dry_rows(["faster-table9", "--scale", "paper"])) == 4
    assert len(_dry_rows(["faster-table9", "--seeds", "2"])) == 8


def test_all_and_a_preset_together_is_refused():
    result = runner.invoke(app, ["reproduce", "faster-table9", "--all", "--dry-run"])
    assert result.exit_code == 2 and "not both" in result.output
