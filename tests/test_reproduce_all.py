"""`harness reproduce --all`: every preset into one folder; 3 seeds per row by default at cpu scale."""
import json
import re

from typer.testing import CliRunner

from harness.cli import app
from harness.config import to_dict
from harness.config.presets import BY_ID, MINUTES_PER_RUN, PRESETS, resolve

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


def test_all_checks_every_presets_options_before_it_runs_any():
    """A --set key that a later table varies (fast-table5: which conv stages to freeze; fast-table4 takes it)
    stops --all before its first preset runs, not when it gets there."""
    result = runner.invoke(app, ["reproduce", "--all", "--dry-run", "--set", "model.freeze_stages=1"])
    assert result.exit_code == 2 and "fast-table5 varies model.freeze_stages" in result.output
    assert not [line for line in result.output.splitlines() if line.startswith("{")]


def test_all_and_a_preset_together_is_refused():
    result = runner.invoke(app, ["reproduce", "faster-table9", "--all", "--dry-run"])
    assert result.exit_code == 2 and "not both" in result.output


def _expectation(args):
    """(runs, presets, distinct, already ok, minutes, pre-training said) from `reproduce --all`'s first line."""
    result = runner.invoke(app, ["reproduce", "--all", "--dry-run", "--results", "res", *args])
    assert result.exit_code == 0, result.output
    said = re.search(r"reproduce --all: (\d+) runs in (\d+) presets, (\d+) distinct \(a row shared by presets runs "
                     r"once\), (\d+) already ok in res: expected about (\d+) min on 2 CPU cores for the rest"
                     r"(, plus pre-training tiny once)?", " ".join(result.output.split()))
    assert said, result.output[:400]
    return (*(int(n) for n in said.groups()[:5]), said.group(6) is not None)


def test_all_states_the_whole_sets_time_with_each_shared_row_once(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HARNESS_PRETRAIN_CACHE", str(tmp_path / "empty-cache"))
    runs, presets, distinct, done, minutes, pretrains = _expectation([])
    assert (runs, presets, done) == (sum(3 * len(p.rows) for p in PRESETS), len(PRESETS), 0)
    assert 0 < distinct < runs and minutes > 0 and pretrains  # fast-table5 shares fast-table4's Fast R-CNN row
    # fast-table4 already ok in the folder: its 6 runs (3 R-CNN, 3 Fast R-CNN) are not expected again
    table4 = resolve(BY_ID["fast-table4"], scale="cpu", seeds=3)
    (tmp_path / "res").mkdir()
    (tmp_path / "res" / "runs.jsonl").write_text("".join(
        json.dumps({"run_id": f"r{i}", "status": "ok", "config": to_dict(point.config)}) + "\n"
        for i, (_, point) in enumerate(table4)))
    _, _, distinct_after, done, fewer, _ = _expectation([])
    assert distinct_after == distinct and done == 6
    assert abs((minutes - fewer) - 3 * (MINUTES_PER_RUN["rcnn"] + MINUTES_PER_RUN["fast"])) <= 1
    assert not _expectation(["--set", "model.init=random"])[5]  # nothing to pre-train from random init


def test_an_interrupted_preset_still_records_its_invocation(tmp_path, monkeypatch):
    """Ctrl-C in a preset's second run: its reproduce.jsonl line says interrupted, how far it got and its minutes
    (the whole set's wall time is the sum of these lines; the report's Benchmarks test reads such a line)."""
    import harness.run.runner

    calls = []

    def fake_execute(cfg, **kwargs):
        calls.append(cfg)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return {}

    monkeypatch.setattr(harness.run.runner, "execute", fake_execute)
    results = tmp_path / "res"
    result = runner.invoke(app, ["reproduce", "faster-table9", "--seeds", "1", "--results", str(results)])
    assert result.exit_code == 130 and "run the same command again to resume" in result.output
    (line,) = (results / "reproduce.jsonl").read_text().splitlines()
    rec = json.loads(line)
    assert rec["interrupted"] is True and rec["complete"] is False and rec["within_stated"] is None
    assert (rec["preset"], rec["runs"], rec["ran"], rec["failed"]) == ("faster-table9", 4, 1, 0)
    assert rec["wall_minutes"] >= 0 and rec["stated_minutes"] > 0
