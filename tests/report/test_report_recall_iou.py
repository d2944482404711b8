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


def test_recall_comes_from_the_run_with_the_most_proposals(tmp_path):
    """A run capped at 300 proposals records recall "at 2000" with its 300 boxes; the group's curves and
    tables must come from the run that had 2000, even when the capped run has the lower seed."""
    import copy

    import pandas as pd
    from report_fixtures import make_records, write_runs

    from harness.report.build import build_report

    records = make_records()
    wide = next(r for r in records if r["run_id"] == "r-fast-0")
    capped = copy.deepcopy(wide)
    capped.update(run_id="r-fast-capped", seed=0)
    wide["seed"] = 1
    flat = {"iou": [0.5, 0.95], "num_proposals": [300, 2000], "recall": [[0.8, 0.1], [0.8, 0.1]]}
    rising = {"iou": [0.5, 0.95], "num_proposals": [300, 2000], "recall": [[0.8, 0.1], [0.99, 0.2]]}
    capped["metrics"]["proposal_recall"]["selective_search"].update(recall_vs_iou=flat, mean_proposals=300.0)
    wide["metrics"]["proposal_recall"]["selective_search"].update(recall_vs_iou=rising, mean_proposals=1998.0)
    write_runs(tmp_path / "r", [capped, *records])  # the capped run first, with the lower seed
    build_report(tmp_path / "r", tmp_path / "out", fmt="md")
    iou = pd.read_csv(tmp_path / "out" / "accuracy_recall_vs_iou.csv")
    ss = iou[iou["method"] == "selective_search"].set_index("num_proposals")
    assert ss.loc[2000, "0.5"] == 0.99 and ss.loc[300, "0.5"] == 0.8
    by_n = pd.read_csv(tmp_path / "out" / "accuracy_proposal_recall.csv")
    ss_rows = by_n[by_n["method"] == "selective_search"]
    assert set(ss_rows["run_id"]) == {"r-fast-0"} and set(ss_rows["proposals_per_img"]) == {1998.0}
