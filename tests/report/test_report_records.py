"""Reading records defensively: empty, malformed, odd and partial records."""
from __future__ import annotations

import json
import warnings

import pytest
from report_fixtures import make_records, write_runs

from harness.report import MalformedRecordWarning, NoRecordsError, build_report
from harness.report.blocks import fmt_bytes, fmt_num, fmt_pct, fmt_pm
from harness.report.build import ReportSectionWarning
from harness.report.records import flatten_config, load_records
from harness.report.speed import NOT_MEASURED, measured_speedups


def test_no_file_raises(tmp_path):
    with pytest.raises(NoRecordsError, match="runs.jsonl"):
        build_report(tmp_path, tmp_path / "out")
    assert not (tmp_path / "out" / "index.html").exists()


def test_empty_file_raises(tmp_path):
    (tmp_path / "runs.jsonl").write_text("\n\n", encoding="utf-8")
    with pytest.raises(NoRecordsError, match="No run records"):
        build_report(tmp_path, tmp_path / "out")


def test_only_malformed_lines_raises(tmp_path):
    (tmp_path / "runs.jsonl").write_text("{oops\n", encoding="utf-8")
    with pytest.warns(MalformedRecordWarning):
        with pytest.raises(NoRecordsError):
            build_report(tmp_path, tmp_path / "out")


def test_malformed_line_skipped_with_warning(tmp_path):
    records = make_records()[:3]
    results = write_runs(tmp_path / "results", records,
                         extra_lines={1: '{"run_id": "truncated", "status": "o', 3: "[1, 2]"})
    with pytest.warns(MalformedRecordWarning) as caught:
        path = build_report(results, tmp_path / "out")
    messages = [str(w.message) for w in caught if issubclass(w.category, MalformedRecordWarning)]
    runs_file = str(results / "runs.jsonl")
    assert any(m.startswith(f"{runs_file}:2:") for m in messages), messages
    assert any(m.startswith(f"{runs_file}:4:") for m in messages), messages
    text = path.read_text(encoding="utf-8")
    assert "Skipped lines" in text and "r-faster-0" in text
    with pytest.warns(MalformedRecordWarning):
        rs = load_records(results)
    assert [s.line for s in rs.skipped] == [2, 4]
    assert len(rs.runs) == 3


def test_jsonl_path_accepted(tmp_path):
    write_runs(tmp_path, make_records()[:2])
    (tmp_path / "runs.jsonl").rename(tmp_path / "other.jsonl")
    rs = load_records(tmp_path / "other.jsonl")
    assert list(rs.runs["run_id"]) == ["r-rcnn-0", "r-fast-0"]


def test_odd_records_never_break_a_section(tmp_path):
    odd = [
        {"status": "ok"},  # nothing else at all
        {"schema_version": 2, "run_id": "future", "status": "ok", "detector": "yolo",
         "dataset": "coco:/data/a b.json", "backbone": "resnet50", "seed": "x",
         "config": {"model": {"new_key": {"deep": [1, {"a": None}]}}, "train": []},
         "metrics": {"map50_voc07": "high", "per_class": ["not", "a", "dict"],
                     "pr_curves": {"c": {"recall": [0.1, "x"], "precision": [1]}},
                     "proposal_recall": {"rpn": {"num_proposals": [1, 2], "recall@0.5": [0.1]}}},
         "timing": {"stages": "fast", "test_s_per_img": {"median": 0}}, "disk": {"bytes": -1},
         "device": "cpu", "versions": ["3.11"], "brand_new_top_level": {"x": 1}},
        {"run_id": "nan", "status": "ok", "detector": "faster", "metrics": {"map50_voc07": None},
         "timing": {"test_s_per_img": {"median": None}}},
        *make_records()[:2],
    ]
    results = write_runs(tmp_path / "results", odd)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ReportSectionWarning)
        path = build_report(results, tmp_path / "out")
    text = path.read_text(encoding="utf-8")
    assert "future" in text and "coco:/data/a b.json" in text


def test_only_failed_runs_still_reported(tmp_path):
    not_ok = [r for r in make_records() if r["status"] != "ok"]
    results = write_runs(tmp_path / "results", not_ok)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ReportSectionWarning)
        text = build_report(results, tmp_path / "out").read_text(encoding="utf-8")
    assert "No run finished successfully yet" in text
    assert "r-faster-failed" in text and "r-rcnn-interrupted" in text
    assert NOT_MEASURED in text


def test_speedup_needs_same_device(tmp_path):
    records = make_records()[:2]
    records[1]["device"] = {"type": "cuda", "name": "NVIDIA H100", "threads": 16}
    rs = load_records(write_runs(tmp_path, records))
    rows = measured_speedups(rs.ok)
    fast_vs_rcnn = [r for r in rows if r["comparison"] == "Fast R-CNN vs R-CNN"]
    assert len(fast_vs_rcnn) == 1
    assert fast_vs_rcnn[0]["status"] == NOT_MEASURED and fast_vs_rcnn[0]["test_speedup"] is None
    assert "NVIDIA H100" in fast_vs_rcnn[0]["setting"]

    text = build_report(tmp_path, tmp_path / "out").read_text(encoding="utf-8")
    assert NOT_MEASURED in text


def test_formatting_helpers():
    assert fmt_pct(0.8123) == "81.2"
    assert fmt_pm(0.81, 0.01414, 2) == "81.0 ± 1.4"
    assert fmt_pm(0.81, None, 1) == "81.0"
    assert fmt_num(0.031) == "0.0310" and fmt_num(95.2) == "95.2" and fmt_num(12345) == "12,345"
    assert fmt_num(None) == "—" and fmt_num(float("nan")) == "—"
    assert fmt_bytes(0) == "0 B" and fmt_bytes(1536) == "1.50 KiB"


def test_flatten_config():
    flat = flatten_config({"model": {"anchor_sizes": [32, 64], "rpn": {"nms": 0.7}},
                           "train": {"lr": 0.01}, "empty": {}})
    assert flat == {"model.anchor_sizes": json.dumps([32, 64]), "model.rpn.nms": 0.7,
                    "train.lr": 0.01, "empty": "{}"}
