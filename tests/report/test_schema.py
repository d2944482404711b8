"""The one record schema: the report's fixtures and a record written by an earlier version obey it,
and the schema check itself notices a renamed key."""
import json
from pathlib import Path

from report_fixtures import make_records

from harness.report.build import build_report
from harness.run.schema import RUN_KEYS, record_problems

OLD_RUNS = Path(__file__).parent / "data" / "runs_schema1_dfa605c.jsonl"


def test_report_fixtures_use_only_schema_keys():
    for record in make_records():
        assert record_problems(record) == [], record["run_id"]


def test_a_renamed_key_is_a_problem():
    record = make_records()[0]
    record["config"]["model"]["loss_box_weight"] = record["config"]["model"].pop("box_weight")
    record["timings"] = record.pop("timing")
    problems = record_problems(record)
    assert "unknown config key 'model.loss_box_weight'" in problems
    assert "unknown record key 'timings'" in problems
    assert "timing" in RUN_KEYS


def test_records_written_before_the_replan_still_render(tmp_path):
    """Two records written by git dfa605c (before harness/ moved into sub-packages): Faster and Fast R-CNN."""
    records = [json.loads(line) for line in OLD_RUNS.read_text().splitlines()]
    assert [r["detector"] for r in records] == ["faster", "fast"]
    for record in records:
        assert record["git_sha"].startswith("dfa605c") and record_problems(record) == []
    results = tmp_path / "results"
    results.mkdir()
    (results / "runs.jsonl").write_text(OLD_RUNS.read_text())
    page = build_report(results, tmp_path / "out", fmt="html").read_text(encoding="utf-8")
    for record in records:
        assert record["run_id"] in page
        assert f"{100 * record['metrics']['map50_voc07']:.1f}" in page
