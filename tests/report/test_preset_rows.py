"""A row is a config, not a tag: a run shows under every preset row whose resolved config it matches (seeds
aside), whichever preset ran it; every row of a table is listed, failed and interrupted ones as such."""
import json

import pytest
from report_fixtures import DEVICE, VERSIONS, write_runs
from typer.testing import CliRunner

from harness.cli import app
from harness.config import to_dict
from harness.config.presets import BY_ID, resolve
from harness.report.preset_rows import preset_tables
from harness.report.records import load_records

# tiny settings for every run of a preset (reproduce --set): 2 train / 1 test image, one epoch
# the presets' cpu scale is synthetic-hard; these tests are about rows and tags, so the tiny default set serves
TINY = ["--dataset", "synthetic", "--set", "data.synthetic.train_images=2", "--set", "data.synthetic.test_images=1",
        "--set", "data.min_size=64", "--set", "data.max_size=96", "--set", "train.epochs=1",
        "--set", "test.warmup_images=0", "--set", "test.recall_counts=10"]


def _record(run_id, cfg, *, status="ok", map07=0.5, reason=None, tags=None):
    return {"schema_version": 1, "run_id": run_id, "status": status, "reason": reason, "detector": cfg.detector,
            "dataset": "synthetic", "backbone": cfg.model.backbone, "seed": cfg.seed, "init": "random",
            "profile": cfg.profile, "config": to_dict(cfg), "git_sha": None, "versions": VERSIONS,
            "device": DEVICE, "metrics": {"map50_voc07": map07, "map50_area": map07} if status == "ok" else None,
            "timing": {"train_s": 1.0, "test_s_per_img": {"median": 0.01}} if status == "ok" else None,
            "started": "2026-12-05T00:00:00+00:00", "finished": None, **(tags or {})}


def _tables(results):
    return {(t.preset_id, t.scale): t for t in preset_tables(load_records(results).latest)}


def test_a_run_counts_for_every_row_it_matches_and_failed_rows_are_listed(tmp_path):
    runs5 = resolve(BY_ID["faster-table5"], scale="cpu", seeds=2)
    faster = [p.config for row, p in runs5 if row.detector == "faster"]
    fast = [p.config for row, p in runs5 if row.detector == "fast"]
    assert len(faster) == 2
    records = [
        # ran by faster-table9 (its tag), untagged seed 1: both count for table 5's RPN row and table 9's lambda 10
        _record("a", faster[0], map07=0.6, tags={"preset": "faster-table9", "preset_row": "lambda 10"}),
        _record("b", faster[1], map07=0.8),
        _record("c", fast[0], status="failed", reason="disk full"),
    ]
    results = write_runs(tmp_path / "res", records)
    tables = _tables(results)
    t5, t9 = tables["faster-table5", "cpu"], tables["faster-table9", "cpu"]
    rows5 = {r.label: r for r in t5.rows}
    rows9 = {r.label: r for r in t9.rows}
    assert list(rows5["Faster R-CNN (RPN)"].ok["run_id"]) == ["a", "b"]
    assert list(rows9["lambda 10"].ok["run_id"]) == ["a", "b"]
    assert [r.runs.empty for r in t9.rows] == [True, True, False, True]  # every row listed
    assert list(rows5["Fast R-CNN + selective search"].runs["status"]) == ["failed"]
    # the cpu-base defaults are rows of many tables (issue 17): faster of 2/5/8/9, fast of fast-4/5/6/7, faster-5
    assert {"faster-table2", "faster-table8", "fast-table4", "fast-table5", "fast-table7"} <= {p for p, _ in tables}
    assert ("fast-table8", "cpu") not in tables  # its Fast R-CNN row also runs the SVM pass: another config
    assert ("faster-table3", "cpu") not in tables  # alternating: another config

    from harness.report import build_report

    page = build_report(results, tmp_path / "out", fmt="md").read_text(encoding="utf-8")
    section = page[page.index("## Reproductions"):]
    # two seeds, 0.6 and 0.8: mean 70.0, 95 % CI half-width t(1) * sd / sqrt(2) = 12.706 * 0.1414 / 1.414 = 127.1
    assert "| Faster R-CNN (RPN) | faster | ok | 2 | 70.0 ± 127.1 (n=2) |" in section
    assert "| lambda 10 | faster | ok | 2 | 70.0 ± 127.1 (n=2) |" in section
    assert "| lambda 1 | faster | not run | 0 |" in section
    assert "| Fast R-CNN + selective search | fast | failed: disk full | 0 |" in section


def test_a_tag_whose_row_no_longer_matches_is_still_shown(tmp_path):
    cfg = resolve(BY_ID["faster-table9"], scale="cpu")[0][1].config
    rec = _record("old", cfg, tags={"preset": "faster-table9", "preset_row": "lambda 0.1"})
    rec["config"]["train"]["epochs"] = 99  # the preset changed since
    tables = _tables(write_runs(tmp_path / "res", [rec]))
    rows = {r.label: r for r in tables["faster-table9", "cpu"].rows}
    assert rows["lambda 0.1"].by_tag and list(rows["lambda 0.1"].runs["run_id"]) == ["old"]


def test_reproduce_refuses_setting_a_key_the_table_varies(tmp_path):
    result = CliRunner().invoke(app, ["reproduce", "faster-table9", "--results", str(tmp_path),
                                      "--set", "model.rpn_box_weight=2"])
    assert result.exit_code == 2 and "varies model.rpn_box_weight" in result.output


@pytest.mark.slow
def test_two_presets_sharing_a_row_run_it_once_and_both_show_it(tmp_path):
    """faster-table5's RPN row is faster-table9's lambda 10 (the defaults): one run, in both tables."""
    runner = CliRunner()
    results = tmp_path / "res"
    common = ["--results", str(results), "--seeds", "1", *TINY, "--set", f"proposals.cache_dir={tmp_path / 'cache'}"]
    first = runner.invoke(app, ["reproduce", "faster-table5", *common])
    assert first.exit_code == 0, first.output
    second = runner.invoke(app, ["reproduce", "faster-table9", *common])
    assert second.exit_code == 0, second.output
    assert "3 ran, 1 skipped, 0 failed" in second.output
    records = [json.loads(x) for x in (results / "runs.jsonl").read_text().splitlines()]
    assert len(records) == 5 and all(r["status"] == "ok" for r in records)
    shared = [r for r in records if r["preset"] == "faster-table5" and r["detector"] == "faster"]
    assert len(shared) == 1 and shared[0]["preset_overrides"]["train.epochs"] == "1"
    tables = _tables(results)
    t5 = {r.label: r for r in tables["faster-table5", "cpu"].rows}
    t9 = {r.label: r for r in tables["faster-table9", "cpu"].rows}
    assert all(not r.ok.empty for r in (*t5.values(), *t9.values()))  # every row of both tables
    assert list(t5["Faster R-CNN (RPN)"].ok["run_id"]) == list(t9["lambda 10"].ok["run_id"]) == \
        [shared[0]["run_id"]]


def test_against_the_papers_pairs_each_published_row_with_its_preset_row(tmp_path):
    """Never a mean over other settings: lambda 1 and lambda 10 get their own runs; Table 3's unshared row the
    step-2 pass; Fast R-CNN Table 4's SVD rows the SVD pass, its speed-ups the R-CNN row's time over ours."""
    import csv

    from harness.report import build_report

    def cfg(preset, label, seed=0):
        return next(p.config for row, p in resolve(BY_ID[preset], scale="cpu", seeds=seed + 1)
                    if row.label == label and p.config.seed == seed)

    lam1 = _record("l1", cfg("faster-table9", "lambda 1"), map07=0.2)
    lam10 = [_record("l10a", cfg("faster-table9", "lambda 10"), map07=0.6),
             _record("l10b", cfg("faster-table9", "lambda 10", 1), map07=0.8)]
    alt = _record("alt", cfg("faster-table3", "4-step alternating: unshared (step 2) and shared (step 4)"), map07=0.7)
    alt["metrics_unshared"] = {"map50_voc07": 0.65}
    rcnn = _record("rc", cfg("fast-table4", "R-CNN"), map07=0.4)
    rcnn["timing"]["test_s_per_img"]["median"] = 2.0
    fast = _record("fa", cfg("fast-table4", "Fast R-CNN (+ truncated SVD pass)"), map07=0.5)
    fast["timing"]["test_s_per_img"]["median"] = 0.04
    fast["timing"]["test_s_per_img_without_proposals"] = {"median": 0.015}
    fast["timing"]["svd"] = {"test_s_per_img": {"median": 0.025}}
    fast["metrics_svd"] = {"map50_voc07": 0.49}
    fast["svd"] = {"head_s_per_img": {"without_svd": 0.01, "with_svd": 0.005}}
    stagewise = _record("sw", cfg("fast-table6", "stage-wise: L_cls, then box regression alone on the frozen net"))
    stagewise["timing"]["train_stages"] = {"stage1_classification": 30.0, "stage2_box_regression": 12.0}
    svm = _record("svm", cfg("fast-table8", "Fast R-CNN: softmax (metrics) and SVMs on its fc7 (metrics_svm)"),
                  map07=0.5)
    svm["metrics_svm"] = {"map50_voc07": 0.52}
    results = write_runs(tmp_path / "res", [lam1, *lam10, alt, rcnn, fast, stagewise, svm])
    page = build_report(results, tmp_path / "out", fmt="md").read_text(encoding="utf-8")
    with (tmp_path / "out" / "reproduce_fast-table4.csv").open() as f:
        t4 = {r["row"]: r for r in csv.DictReader(f)}
    svd_row = t4["Fast R-CNN (+ truncated SVD pass)"]
    assert float(svd_row["test_speedup_over_rcnn"]) == 50.0 and float(svd_row["test_speedup_over_rcnn_svd"]) == 80.0
    assert float(svd_row["head_s_svd_mean"]) == 0.005 and float(svd_row["map50_voc07_svd_mean"]) == 0.49
    assert float(svd_row["test_s_noprop_median_mean"]) == 0.015 and "test without proposals (ms/img)" in page
    with (tmp_path / "out" / "reproduce_faster-table3.csv").open() as f:
        assert float(next(csv.DictReader(f))["map50_voc07_unshared_mean"]) == 0.65
    with (tmp_path / "out" / "reproduce_fast-table8.csv").open() as f:
        assert float(next(csv.DictReader(f))["map50_voc07_svm_mean"]) == 0.52
    assert "SVMs on its fc7: VOC07 mAP50 (%)" in page
    with (tmp_path / "out" / "reproduce_fast-table6.csv").open() as f:
        t6 = {r["row"]: r for r in csv.DictReader(f)}
    stages = t6["stage-wise: L_cls, then box regression alone on the frozen net"]
    assert float(stages["train_stage_stage1_classification_s"]) == 30.0
    assert float(stages["train_stage_stage2_box_regression_s"]) == 12.0
    assert "stage1_classification 30.0 · stage2_box_regression 12.0" in page
    assert "unshared, step 2: VOC07 mAP50 (%)" in page and "head (ms/img): without → with SVD" in page
    with (tmp_path / "out" / "papers.csv").open() as f:
        rows = {(r["table"], r["method"], r["setting"], r["metric"], r["backbone"]): r for r in csv.DictReader(f)}

    def ours(table, method, setting, metric="mAP", backbone="VGG16"):
        r = rows[(table, method, setting, metric, backbone)]
        return float(r["ours_value"]) if r["ours_value"] else r["ours"]

    fr = "Faster R-CNN (RPN)"
    assert ours("Table 9", fr, "lambda 1") == pytest.approx(20.0)
    assert ours("Table 9", fr, "lambda 10") == pytest.approx(70.0)
    assert "no analogue yet" in ours("Table 9", fr, "lambda 0.1")
    assert ours("Table 3", fr, "unshared features") == pytest.approx(65.0)
    assert ours("Table 3", fr, "shared features") == pytest.approx(70.0)
    vgg = "VGG16 (L)"
    assert ours("Table 4", "Fast R-CNN", "", backbone=vgg) == pytest.approx(50.0)
    assert ours("Table 4", "Fast R-CNN", "truncated SVD", backbone=vgg) == pytest.approx(49.0)
    assert ours("Table 4", "Fast R-CNN", "truncated SVD", "test time", vgg) == pytest.approx(0.025)
    assert ours("Table 4", "Fast R-CNN vs R-CNN", "", "test speedup", vgg) == pytest.approx(50.0)
    assert ours("Table 4", "Fast R-CNN vs R-CNN", "truncated SVD", "test speedup", vgg) == pytest.approx(80.0)
    # R-CNN Table 2's rows: no run of their preset, so no analogue (not the R-CNN run of fast-table4)
    assert "no analogue yet" in ours("Table 2", "R-CNN", "pool5 no fine-tune", backbone="AlexNet")


def test_figure2_table_shows_each_rows_recall_against_iou(tmp_path):
    """faster-figure2 (and the proposal sweep) show each row's recall vs IoU: the mean over its seeds, per
    source and N, with the proposals per image its runs had."""
    import pandas as pd

    from harness.report import build_report

    rows = {row.label: [p.config for r, p in resolve(BY_ID["faster-figure2"], scale="cpu", seeds=2) if r is row]
            for row in BY_ID["faster-figure2"].rows}
    ss_cfgs, rpn_cfgs = rows["selective search (Fast R-CNN run)"], rows["RPN (Faster R-CNN run)"]
    records = []
    for i, (cfg, r300) in enumerate(zip(ss_cfgs, (0.7, 0.8))):
        rec = _record(f"ss{i}", cfg)
        rec["metrics"]["proposal_recall"] = {"selective_search": {"num_proposals": [300], "recall@0.5": [r300],
            "mean_proposals": 2000.0, "recall_vs_iou": {"iou": [0.5, 0.9], "num_proposals": [300, 2000],
                                                        "recall": [[r300, 0.1], [0.99, 0.3]]}}}
        records.append(rec)
    rpn = _record("rpn0", rpn_cfgs[0])
    rpn["metrics"]["proposal_recall"] = {"rpn": {"num_proposals": [300], "recall@0.5": [0.9], "mean_proposals": 650.0,
        "recall_vs_iou": {"iou": [0.5, 0.9], "num_proposals": [300, 2000], "recall": [[0.9, 0.0], [0.92, 0.0]]}}}
    records.append(rpn)
    build_report(write_runs(tmp_path / "res", records), tmp_path / "out", fmt="md")
    t = pd.read_csv(tmp_path / "out" / "reproduce_faster-figure2_recall_vs_iou.csv")
    t = t.set_index(["method", "num_proposals"])
    ss300, rpn300 = t.loc[("selective_search", 300)], t.loc[("rpn", 300)]
    assert ss300["0.5"] == pytest.approx(0.75) and ss300["runs"] == 2
    assert t.loc[("selective_search", 2000), "0.9"] == pytest.approx(0.3)
    assert t.loc[("rpn", 2000), "proposals_per_img"] == 650.0 and rpn300["0.5"] == pytest.approx(0.9)
    # the RPN run is also faster-table9's lambda 10 row; that table is not about proposals: no recall table
    assert (tmp_path / "out" / "reproduce_faster-table9.csv").exists()
    assert not (tmp_path / "out" / "reproduce_faster-table9_recall_vs_iou.csv").exists()


def test_overrides_that_resolve_to_the_default_rows_are_one_table(tmp_path):
    """`reproduce --set model.init=X` where X is the cpu scale's own default: its runs are the rows of the plain
    table, shown once, not again under a second table of the same rows."""
    cfg = resolve(BY_ID["faster-table9"], scale="cpu")[0][1].config
    tags = {"preset": "faster-table9", "preset_row": "lambda 0.1", "preset_overrides": {"model.init": cfg.model.init}}
    tables = preset_tables(load_records(write_runs(tmp_path / "res", [_record("a", cfg, tags=tags)])).latest)
    assert [(t.preset_id, t.scale, t.extra) for t in tables if t.preset_id == "faster-table9"] == [
        ("faster-table9", "cpu", {})]
    assert [list(r.runs["run_id"]) for r in tables[0].rows if not r.runs.empty] == [["a"]]


def test_a_record_from_before_the_pretrained_default_is_a_row_of_the_random_init_table(tmp_path):
    """A run that `reproduce faster-table9` made when the cpu scale's default init was random: no override named,
    its config says `model.init=random`. It is a run of `--set model.init=random`'s rows, by config, in every
    preset that shares the row (not only under its tag, and not "matched by tag")."""
    [(row, point)] = [(r, p) for r, p in resolve(BY_ID["faster-table9"], scale="cpu", extra={"model.init": "random"})
                      if r.label == "lambda 10"]
    assert point.config.model.init == "random"
    tags = {"preset": "faster-table9", "preset_row": row.label, "scale": "cpu"}
    tables = preset_tables(load_records(write_runs(tmp_path / "res", [_record("old", point.config, tags=tags)])).latest)
    found = {t.preset_id: (t.extra, [r for r in t.rows if not r.runs.empty]) for t in tables}
    assert {"faster-table9", "faster-table2"} <= set(found)  # the default row of both tables
    for extra, rows in found.values():
        assert extra == {"model.init": "random"}
        assert [(list(r.runs["run_id"]), r.by_tag) for r in rows] == [(["old"], False)]
