"""The recall-vs-IoU figure and table (Faster R-CNN Figure 2 / Fast R-CNN Figure 3)."""
def test_report_shows_recall_vs_iou(tmp_path):
    import json

    from report_fixtures import make_records, write_runs

    from harness.report.build import build_report

    records = make_records()
    fast = next(r for r in records if r["run_id"] == "r-fast-0")
    fast["metrics"]["proposal_recall"]["selective_search"]["recall_vs_iou"] = {
        "iou": [0.5, 0.75, 0.95], "num_proposals": [300, 2000], "recall": [[0.9, 0.5, 0.1], [0.95, 0.6, 0.12]]}
    write_runs(tmp_path / "r", records)
    build_report(tmp_path / "r", tmp_path / "out", fmt="md")
    text = (tmp_path / "out" / "summary.md").read_text()
    assert "Proposal recall vs IoU threshold" in text and (tmp_path / "out" / "accuracy_recall_vs_iou.csv").is_file()
    csv = (tmp_path / "out" / "accuracy_recall_vs_iou.csv").read_text().splitlines()
    assert len(csv) == 3 and csv[1].split(",")[2:] == ["300", "0.9", "0.5", "0.1"]
    json.dumps(fast)
