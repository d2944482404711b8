"""The Benchmarks section (bench.jsonl, reproduce.jsonl), the Summary without preset runs,
and resumed runs counted once."""
from __future__ import annotations

import base64
import csv
import io
import re
import warnings

import pytest
from PIL import Image
from report_fixtures import (
    _record,
    make_bench_records,
    make_records,
    make_reproduce_records,
    make_scaling_record,
    write_jsonl,
    write_runs,
)

from harness.report import MalformedRecordWarning, build_report
from harness.report.bench_curves import _panels
from harness.report.benchmarks import meets, target_text
from harness.report.build import ReportSectionWarning
from harness.report.records import load_records

TORN = '{"kind": "scaling", "backbone": "ti'
FASTER_STAGES = {"backbone": 0.01, "proposals": 0.01, "head": 0.01, "postprocess": 0.0}


def _csv(path) -> list[dict]:
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def _section(page: str, title: str) -> str:
    start = page.index(f"<h2>{title}</h2>")
    end = page.find("<h2>", start + 1)
    return page[start:end if end > 0 else None]


@pytest.fixture(scope="module")
def bench_report(tmp_path_factory):
    """HTML report of the fixture runs plus bench.jsonl (with a torn line 3) and reproduce.jsonl."""
    base = tmp_path_factory.mktemp("bench_report")
    results = write_runs(base / "results", make_records()[:3])
    write_jsonl(results / "bench.jsonl", make_bench_records(), extra_lines={2: TORN})
    write_jsonl(results / "reproduce.jsonl", make_reproduce_records())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path = build_report(results, base / "out")
    return path, caught


def test_bench_figures_latest_per_setting(bench_report):
    path, caught = bench_report
    assert not [w for w in caught if issubclass(w.category, ReportSectionWarning)]
    rows = _csv(path.parent / "bench_figures.csv")
    by = {(r["kind"], r["figure"], r["device_name"]): r for r in rows}
    assert len(by) == len(rows) == 4 + 1 + 2 + 2 + 1  # faster cpu (with the SVD variant), rcnn, proposals, scaling, gpu

    rcnn = by[("rcnn_cnn_stage", "fraction", "AMD EPYC 7B13")]
    assert float(rcnn["value"]) == 0.95 and rcnn["records"] == "2"  # the later of two records
    assert rcnn["target"] == ">= 0.9" and rcnn["met"] == "True"
    faster = {r["figure"]: r for r in rows
              if r["kind"] == "faster_vs_torchvision" and r["device_name"] == "AMD EPYC 7B13"}
    assert faster["inference_throughput_ours_over_torchvision"]["met"] == "True"
    assert faster["eval_time_over_backbone_time"]["met"] == "False"  # 8.0 against "<= 1.25"
    assert all(r["init"] == "random" and r["backbone"] == "tiny" for r in faster.values())
    gpu = by[("faster_vs_torchvision", "inference_throughput_ours_over_torchvision",
              "NVIDIA H100")]
    assert (gpu["device_type"], gpu["device_threads"], gpu["backbone"], gpu["init"]) == (
        "cuda", "16.0", "resnet50", "weights")
    assert gpu["met"] == "False"
    search = by[("selective_search_proposals", "parallel_speedup", "AMD EPYC 7B13")]
    assert search["met"] == "False" and search["target"] == ">= 1.8"
    growth = by[("scaling", "disk_ratio", "AMD EPYC 7B13")]
    assert float(growth["value"]) == 4.0 and growth["met"] == ""  # no target

    section = _section(path.read_text(encoding="utf-8"), "Benchmarks")
    assert "cpu · AMD EPYC 7B13 · 2 threads" in section
    assert "cuda · NVIDIA H100 · 16 threads" in section
    assert "ours 0.0400 vs torchvision 0.0500 s/img" in section
    assert "test with SVD head (ranks [64, 16]) 0.0300 vs backbone alone 0.00500 s/img" in section
    assert "1,330 vs raw 1,400 crops/s" in section
    assert "2 workers 8.40 vs 1 worker 4.84 images/s (best pass); main process alone 4.50 images/s" in section
    assert "missed" in section and "met" in section


def test_torn_bench_line_skipped_and_listed(bench_report):
    path, caught = bench_report
    bench_file = str(path.parent.parent / "results" / "bench.jsonl")
    messages = [str(w.message) for w in caught if issubclass(w.category, MalformedRecordWarning)]
    assert any(m.startswith(f"{bench_file}:3:") for m in messages), messages
    skipped = _csv(path.parent / "provenance_skipped_lines.csv")
    assert [(r["file"], r["line"]) for r in skipped] == [(bench_file, "3")]


def test_scaling_plots_in_html(bench_report):
    path, _ = bench_report
    section = _section(path.read_text(encoding="utf-8"), "Benchmarks")
    figure = re.search(r'<figure class="plot" id="fig-bench_scaling_1"><img src="([^"]+)"',
                       section)
    assert figure, "the scaling figure is missing from the Benchmarks section"
    png = base64.b64decode(figure.group(1).split(",", 1)[1], validate=True)
    with Image.open(io.BytesIO(png)) as im:
        assert im.size[0] > 600 and im.size[1] > 400  # 2 x 2 panels
    assert "Measured on cpu · AMD EPYC 7B13 · 2 threads; backbone tiny, random init" in section
    points = _csv(path.parent / "bench_scaling_points.csv")
    curves = {(r["curve"], r["detector"]): r for r in points}
    assert len(points) == 3 + 3 + 3 + 2 + 2
    assert {d for (c, d) in curves if "proposals" in c} == {"fast", "rcnn"}
    disk = [r for r in points if r["y_unit"] == "MB"]
    assert [float(r["y"]) for r in disk] == [25.0, 100.0]
    rss = [r for r in points if r["y_unit"] == "MiB"]
    assert [float(r["y"]) for r in rss] == [900.0, 910.0]


def test_scaling_panels():
    panels = _panels(make_scaling_record())
    assert [p.title for p in panels] == [
        "Test time vs proposals per image", "Faster R-CNN test time vs image size",
        "R-CNN feature cache vs training images", "R-CNN peak RSS vs training images"]
    assert panels[0].log_x and panels[0].log_y
    assert [ln.detector for ln in panels[0].lines] == ["fast", "rcnn"]
    assert panels[1].lines[0].x == [128.0, 192.0, 600.0]


def test_preset_wall_times(bench_report):
    path, _ = bench_report
    rows = {r["preset"]: r for r in _csv(path.parent / "bench_reproduce_wall_time.csv")}
    assert set(rows) == {"faster-table9", "fast-table4", "faster-table8"}
    table9 = rows["faster-table9"]  # the latest invocation, which reused 3 rows
    assert (table9["invocations"], table9["complete"], float(table9["wall_minutes"])) == (
        "2", "False", 2.5)
    assert table9["within_stated"] == "not comparable (incomplete)"
    fast4 = rows["fast-table4"]  # the invocation that ran its rows, not the later one that skipped them all
    assert fast4["within_stated"] == "no (1.50× the stated time)" and float(fast4["wall_minutes"]) == 12.0
    assert fast4["invocations"] == "2" and float(fast4["wall_minutes_all_invocations"]) == 12.5
    assert float(table9["wall_minutes_all_invocations"]) == 11.5
    section = _section(path.read_text(encoding="utf-8"), "Benchmarks")
    assert "incomplete: 3 of 4 rows skipped (earlier runs reused)" in section
    assert "incomplete: interrupted after 12 of 18 rows ran" in section
    assert rows["faster-table8"]["within_stated"] == "not comparable (incomplete)"
    assert "all presets together: cpu scale 36.0 min." in section  # the interrupted invocation's 12 included


def test_missing_bench_files_give_notes(tmp_path):
    results = write_runs(tmp_path / "results", make_records()[:2])
    with warnings.catch_warnings():
        warnings.simplefilter("error", ReportSectionWarning)
        page = build_report(results, tmp_path / "out").read_text(encoding="utf-8")
    section = _section(page, "Benchmarks")
    assert "No bench record in" in section and "No preset wall times in" in section
    assert "<table>" not in section and "<img" not in section
    assert not (tmp_path / "out" / "bench_figures.csv").exists()


def test_only_torn_bench_lines_and_markdown(tmp_path):
    results = write_runs(tmp_path / "results", make_records()[:2])
    write_jsonl(results / "bench.jsonl", [], extra_lines={0: TORN, 1: "[1, 2]"})
    write_jsonl(results / "reproduce.jsonl", make_reproduce_records()[:1])
    with pytest.warns(MalformedRecordWarning):
        rs = load_records(results)
    assert rs.bench == [] and len(rs.reproduce) == 1 and len(rs.skipped) == 2
    with pytest.warns(MalformedRecordWarning):
        md = build_report(results, tmp_path / "md", fmt="md").read_text(encoding="utf-8")
    section = md[md.index("## Benchmarks"):md.index("## Against the papers")]
    assert "No bench record in" in section
    assert "| faster-table9 | cpu |" in section


def test_markdown_writes_the_scaling_figure(tmp_path):
    results = write_runs(tmp_path / "results", make_records()[:1])
    write_jsonl(results / "bench.jsonl", [make_scaling_record()])
    md = build_report(results, tmp_path / "md", fmt="md").read_text(encoding="utf-8")
    assert "(figures/bench_scaling_1.png)" in md
    assert (tmp_path / "md" / "figures" / "bench_scaling_1.png").is_file()


def test_targets():
    assert target_text(1.8) == ">= 1.8" and target_text("<= 1.25") == "<= 1.25"
    assert target_text(None) is None
    assert meets(1.25, ">= 1.2") and not meets(1.19, ">=1.2")
    assert meets(1.0, "<= 1.25") and not meets(7.5, "<= 1.25")
    assert meets(None, ">= 1") is None and meets(2.0, "about 2") is None


# --------------------------------------------------------------------------- #
# Summary: preset runs are left to Reproductions and Ablations
# --------------------------------------------------------------------------- #
def _preset(run_id: str, seed: int, map07: float) -> dict:
    rec = _record(run_id, "faster", seed, map07=map07, test_s=0.03, train_s=30.0,
                  stages=FASTER_STAGES)
    rec.update({"preset": "faster-table9", "preset_row": "lambda 1", "scale": "cpu"})
    return rec


def test_summary_leaves_preset_runs_out(tmp_path):
    default = [_record(f"d{i}", "faster", i, map07=0.80, test_s=0.02, train_s=80.0,
                       stages=FASTER_STAGES) for i in range(2)]
    records = default + [_preset("p0", 0, 0.40), _preset("p1", 1, 0.50)]
    page = build_report(write_runs(tmp_path / "res", records), tmp_path / "out").read_text(
        encoding="utf-8")
    (row,) = _csv(tmp_path / "out" / "summary.csv")
    assert row["runs"] == "2" and float(row["map50_voc07_mean"]) == pytest.approx(0.80)
    summary = _section(page, "Summary")
    assert "2 preset run(s) (faster-table9) are left out of this table" in summary
    assert "faster-table9" in _section(page, "Reproductions")


def test_summary_with_only_preset_runs(tmp_path):
    results = write_runs(tmp_path / "res", [_preset("p0", 0, 0.40)])
    with warnings.catch_warnings():
        warnings.simplefilter("error", ReportSectionWarning)
        page = build_report(results, tmp_path / "out").read_text(encoding="utf-8")
    assert "Every successful run is a preset run" in _section(page, "Summary")
    assert not (tmp_path / "out" / "summary.csv").exists()


# --------------------------------------------------------------------------- #
# a resumed run: the last record of a run id counts
# --------------------------------------------------------------------------- #
def _resumed_records() -> list[dict]:
    interrupted = _record("r-resumed", "faster", 0, map07=0.0, test_s=0.0, train_s=None,
                          stages={}, status="interrupted", reason="KeyboardInterrupt")
    interrupted["metrics"] = interrupted["timing"] = None
    early_ok = _record("r-twice", "faster", 1, map07=0.50, test_s=0.02, train_s=40.0,
                       stages=FASTER_STAGES)
    resumed = _record("r-resumed", "faster", 0, map07=0.80, test_s=0.02, train_s=80.0,
                      stages=FASTER_STAGES)
    resumed["resumed_from_epoch"] = 4
    late_ok = _record("r-twice", "faster", 1, map07=0.90, test_s=0.02, train_s=90.0,
                      stages=FASTER_STAGES)
    return [interrupted, early_ok, resumed, late_ok]


def test_resumed_run_counted_once(tmp_path):
    results = write_runs(tmp_path / "res", _resumed_records())
    rs = load_records(results)
    assert len(rs.runs) == 4 and len(rs.latest) == 2
    assert list(rs.ok["run_id"]) == ["r-resumed", "r-twice"]
    assert list(rs.ok["map50_voc07"]) == [0.80, 0.90]  # the last record of each run id

    page = build_report(results, tmp_path / "out").read_text(encoding="utf-8")
    assert "2 run(s): 2 ok (4 records: 2 superseded" in page
    (row,) = _csv(tmp_path / "out" / "summary.csv")
    assert row["runs"] == "2" and float(row["map50_voc07_mean"]) == pytest.approx(0.85)
    assert "No failed or interrupted run." in _section(page, "Provenance")
    every = _csv(tmp_path / "out" / "provenance_runs.csv")
    assert [(r["run_id"], r["counted"]) for r in every] == [
        ("r-resumed", "False"), ("r-twice", "False"), ("r-resumed", "True"), ("r-twice", "True")]


def test_interrupted_run_not_resumed_still_counts(tmp_path):
    records = [r for r in _resumed_records() if r["run_id"] == "r-resumed"][:1]
    records.append(_record("r-other", "faster", 2, map07=0.7, test_s=0.02, train_s=70.0,
                           stages=FASTER_STAGES))
    page = build_report(write_runs(tmp_path / "res", records), tmp_path / "out").read_text(
        encoding="utf-8")
    assert "2 run(s): 1 ok, 1 interrupted" in page
    assert "superseded by a later record" not in page
    not_ok = _csv(tmp_path / "out" / "provenance_not_ok.csv")
    assert [(r["run_id"], r["status"]) for r in not_ok] == [("r-resumed", "interrupted")]


def test_odd_bench_records_never_break_the_section(tmp_path):
    results = write_runs(tmp_path / "res", make_records()[:1])
    write_jsonl(results / "bench.jsonl", [
        {}, {"kind": 5}, {"bench": "rcnn_cnn_stage", "device": "cpu", "fraction": "high"},
        {"kind": "scaling", "test_time_vs_proposals": "x", "rcnn_growth": [1],
         "rcnn_disk_vs_images": 7, "faster_time_vs_image_size": [1, {"min_size": "a"}]},
        {"kind": "faster_vs_torchvision", "ratios": {"a": "x", "b": 2}, "speed": [],
         "targets": {"a": ">= banana", "b": ">= 1"}, "image_size": "big", "met": [True]},
    ])
    write_jsonl(results / "reproduce.jsonl", [{}, {"preset": ["x"], "runs": "many",
                                                    "complete": "yes", "wall_minutes": -1}])
    with warnings.catch_warnings():
        warnings.simplefilter("error", ReportSectionWarning)
        page = build_report(results, tmp_path / "out").read_text(encoding="utf-8")
    section = _section(page, "Benchmarks")
    assert "device not recorded" in section and "not judged" in section
    assert "No scaling curves" not in section  # a scaling record, with no usable point
    assert "none with a curve point" in section
    figures = {r["figure"]: r for r in _csv(tmp_path / "out" / "bench_figures.csv")}
    assert figures["b"]["met"] == "True"
