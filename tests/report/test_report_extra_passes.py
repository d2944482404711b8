"""The extra test passes that stand for published rows appear in the report (Fast Table 8, Faster Table 2)."""
from report_fixtures import make_records, write_runs

from harness.report.build import build_report


def test_report_shows_svm_and_rpn_proposal_passes(tmp_path):
    records = make_records()
    fast = next(r for r in records if r["run_id"] == "r-fast-0")
    fast["metrics_svm"] = {"map50_voc07": 0.612, "map50_area": 0.655}
    fast["rpn_proposals"] = {"variants": {
        "RPN 300": {"num_proposals": 300, "mean_proposals": 280.5, "map50_voc07": 0.58, "map50_area": 0.6},
        "RPN no cls 100": {"num_proposals": 100, "mean_proposals": 100, "map50_voc07": 0.41, "map50_area": 0.43}}}
    write_runs(tmp_path / "r", records)
    build_report(tmp_path / "r", tmp_path / "out", fmt="md")
    text = (tmp_path / "out" / "summary.md").read_text()
    assert "softmax vs SVMs on its own fc7" in text and "61.2 / 65.5" in text and "63.4" in text
    rpn = (tmp_path / "out" / "extra_rpn_proposals.csv").read_text().splitlines()
    assert len(rpn) == 3 and "RPN no cls 100" in rpn[2] and "0.41" in rpn[2]


def test_report_without_extra_passes_says_so(tmp_path):
    write_runs(tmp_path / "r", make_records())
    build_report(tmp_path / "r", tmp_path / "out", fmt="md")
    assert "No run with test.svm or test.rpn_proposals yet" in (tmp_path / "out" / "summary.md").read_text()
