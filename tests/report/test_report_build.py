"""The report built from the hand-made fixture records (see conftest.py)."""
from __future__ import annotations

import base64
import csv
import io
import re

import pandas as pd
from PIL import Image
from report_fixtures import EVIL, make_records, write_runs

from harness.report import build_report
from harness.report.build import ReportSectionWarning
from harness.report.published import PUBLISHED_CSV, SOURCE_COLUMNS, load_published

SECTIONS = ["Summary", "Speed", "Accuracy", "Detections", "Training", "Storage", "Benchmarks",
            "Against the papers", "Reproductions", "Claims", "Ablations", "Extra test passes", "Provenance"]


def _csv(out, name) -> list[dict]:
    with open(out / name, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def test_sections_in_order_with_progress(html_report):
    path, calls, caught = html_report
    assert calls == SECTIONS
    text = path.read_text(encoding="utf-8")
    positions = [text.index(f"<h2>{s}</h2>") for s in SECTIONS]
    assert positions == sorted(positions)
    assert not [w for w in caught if issubclass(w.category, ReportSectionWarning)], \
        [str(w.message) for w in caught]


def test_expected_numbers(html_report):
    text = html_report[0].read_text(encoding="utf-8")
    for expected in [
        "51.2",          # R-CNN VOC07 mAP50 (%)
        "63.4",          # Fast R-CNN
        "80.0 ± 2.0",    # Faster R-CNN over its three ok runs
        "81.0 ± 1.4",    # ablation: box_weight 1.0, seeds 0 and 1
        "78.0",          # ablation: box_weight 10.0
        "50.0×",         # measured test speed-up Fast vs R-CNN (2.5 s / 0.05 s)
        "10.0×",         # measured train speed-up Fast vs R-CNN (600 s / 60 s)
        "2.5×",          # measured test speed-up Faster vs Fast (0.05 s / 0.02 s)
        "146×",          # paper: Fast vs R-CNN, VGG16, from published.csv
        "8.8×",          # paper: train 84 h / 9.5 h, derived from published.csv
        "9.2×",          # paper: 1830 ms / 198 ms, derived from published.csv
        "118 MiB",       # R-CNN feature cache (123456789 bytes)
        "233 GiB",       # R-CNN extrapolation (250e9 bytes)
        "hundreds of GB",
        "AMD EPYC 7B13",
        "model.box_weight",
        "0123456789ab",  # git SHA, shortened
    ]:
        assert expected in text, expected


def test_failed_and_interrupted_listed_with_reason(html_report):
    text = html_report[0].read_text(encoding="utf-8")
    assert "r-faster-failed" in text and "r-rcnn-interrupted" in text
    assert "CUDA &lt;b&gt;out&lt;/b&gt; of memory &amp; more" in text
    assert "<b>out</b>" not in text
    assert "KeyboardInterrupt" in text


def test_escaping_and_self_contained(html_report):
    text = html_report[0].read_text(encoding="utf-8")
    assert EVIL not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "<script" not in text.lower()  # the page needs no script at all
    assert not re.search(r"https?://", text)
    assert "<link" not in text.lower() and "@import" not in text
    assert "url(" not in text
    srcs = re.findall(r'<img[^>]*\ssrc="([^"]*)"', text)
    assert len(srcs) >= 6
    for src in srcs:  # plots are PNG, the gallery's pictures JPEG
        assert src.startswith(("data:image/png;base64,", "data:image/jpeg;base64,"))
        png = base64.b64decode(src.split(",", 1)[1], validate=True)
        with Image.open(io.BytesIO(png)) as im:
            im.load()  # decodes the whole image
            assert im.size[0] > 100 and im.size[1] > 100


def test_csv_per_table(html_report):
    out = html_report[0].parent
    text = html_report[0].read_text(encoding="utf-8")
    for name in re.findall(r'<a href="([^"]+\.csv)">', text):
        assert (out / name).is_file(), name
    summary = _csv(out, "summary.csv")
    assert [r["detector"] for r in summary] == ["rcnn", "fast", "faster"]
    assert [r["runs"] for r in summary] == ["1", "1", "3"]
    assert float(summary[0]["map50_voc07_mean"]) == 0.512

    ratios = _csv(out, "speed_ratios.csv")
    measured = {r["comparison"]: r for r in ratios if r["source"] == "measured"}
    assert float(measured["Fast R-CNN vs R-CNN"]["test_speedup"]) == 50.0
    assert abs(float(measured["Faster R-CNN vs Fast R-CNN + selective search"]["test_speedup"])
               - 2.5) < 1e-9

    papers = _csv(out, "papers.csv")
    published = load_published()
    assert len(papers) == len(published)
    assert list(papers[0])[: len(SOURCE_COLUMNS)] == SOURCE_COLUMNS
    assert [r["value"] for r in papers] == list(published["value"])
    no_analogue = [r for r in papers if r["method"] == "SPPnet"]
    assert no_analogue and no_analogue[0]["ours"].startswith("no analogue")

    ablations = _csv(out, "ablations.csv")
    assert {(r["key"], r["value"], r["runs"]) for r in ablations} == {
        ("model.box_weight", "1.0", "2"), ("model.box_weight", "10.0", "1")}

    runs = _csv(out, "provenance_runs.csv")
    assert len(runs) == len(make_records())
    assert runs[0]["git_sha"] == "0123456789abcdef0123456789abcdef01234567"
    not_ok = _csv(out, "provenance_not_ok.csv")
    assert [(r["run_id"], r["status"]) for r in not_ok] == [
        ("r-faster-failed", "failed"), ("r-rcnn-interrupted", "interrupted")]

    per_class = next(out.glob("accuracy_per_class_*.csv"))
    classes = {r["class"] for r in _csv(out, per_class.name)}
    assert classes == {"disc", EVIL}  # raw in CSV (data), escaped in HTML


def test_markdown(tmp_path):
    results = write_runs(tmp_path / "results", make_records())
    path = build_report(results, tmp_path / "md", fmt="md")
    assert path.name == "summary.md"
    text = path.read_text(encoding="utf-8")
    for s in SECTIONS:
        assert f"## {s}" in text
    assert "| R-CNN | tiny | synthetic |" in text
    assert "80.0 ± 2.0" in text and "50.0×" in text
    assert EVIL not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    figures = re.findall(r"!\[[^\]]*\]\((figures/[^)]+\.png)\)", text)
    assert figures and all((path.parent / f).is_file() for f in figures)
    assert (path.parent / "summary.csv").is_file()


def test_published_reference_is_packaged():
    assert PUBLISHED_CSV.is_file()
    assert "harness" in PUBLISHED_CSV.parts and "reference" in PUBLISHED_CSV.parts
    df = pd.read_csv(PUBLISHED_CSV, dtype=str, keep_default_na=False)
    assert list(df.columns) == SOURCE_COLUMNS
    assert (df["value"] == "hundreds of GB").any()


def test_reproductions_show_our_table_beside_the_papers(tmp_path):
    from report_fixtures import _record, write_runs

    from harness.report import build_report

    recs = []
    for i, (row, lam_map) in enumerate([("lambda 1", 0.70), ("lambda 10", 0.74), ("lambda 10", 0.76)]):
        rec = _record(f"p{i}", "faster", i, map07=lam_map, test_s=0.03, train_s=60.0,
                      stages={"backbone": 0.01, "proposals": 0.01, "head": 0.01, "postprocess": 0.0})
        rec.update({"preset": "faster-table9", "preset_row": row, "scale": "cpu"})
        recs.append(rec)
    write_runs(tmp_path / "res", recs)
    page = build_report(tmp_path / "res", tmp_path / "out").read_text(encoding="utf-8")
    section = page[page.index("<h2>Reproductions</h2>"):]
    assert "faster-table9" in section and "lambda 10" in section
    assert "75.0 ± 12.7 (n=2)" in section  # lambda-10 over two seeds: 95 % CI half-width 12.706 * 0.01414 / 1.414
    assert "Published: Faster R-CNN (NIPS 2015), Table 9" in section
    ours = (tmp_path / "out" / "reproduce_faster-table9.csv").read_text()
    assert "lambda 1," in ours and "lambda 10," in ours


def test_reproductions_list_failed_and_interrupted_rows_never_as_missing(tmp_path):
    """Issue 20.4: a preset row whose runs failed or were interrupted is listed with that status."""
    from report_fixtures import _record, write_runs

    from harness.report import build_report

    stages = {"backbone": 0.01, "proposals": 0.01, "head": 0.01, "postprocess": 0.0}
    rows = [("lambda 1", "ok", None), ("lambda 10", "failed", "NonFiniteLossError: non-finite loss at step 3"),
            ("lambda 100", "interrupted", "interrupted (signal 15)"),
            ("lambda 0.1", "failed", "RuntimeError: boom"), ("lambda 0.1", "ok", None)]
    recs = []
    for i, (row, status, reason) in enumerate(rows):
        rec = _record(f"q{i}", "faster", 0, map07=0.70, test_s=0.03, train_s=60.0, stages=stages,
                      status=status, reason=reason)
        rec.update({"preset": "faster-table9", "preset_row": row, "scale": "cpu"})
        recs.append(rec)
    write_runs(tmp_path / "res", recs)
    page = build_report(tmp_path / "res", tmp_path / "out").read_text(encoding="utf-8")
    ours = {r["row"]: r for r in _csv(tmp_path / "out", "reproduce_faster-table9.csv")}
    assert set(ours) == {"lambda 0.1", "lambda 1", "lambda 10", "lambda 100"}  # every row of the preset
    assert ours["lambda 1"]["status"] == "ok" and ours["lambda 1"]["runs"] == "1"
    assert ours["lambda 10"]["status"] == "failed: NonFiniteLossError: non-finite loss at step 3"
    assert ours["lambda 10"]["runs"] == "0" and ours["lambda 10"]["map50_voc07_mean"] == ""
    assert ours["lambda 100"]["status"] == "interrupted"
    assert ours["lambda 0.1"]["status"] == "ok (1 of 2 runs failed)"
    section = page[page.index("<h2>Reproductions</h2>"):]
    assert "failed: NonFiniteLossError" in section and "interrupted" in section


def test_reproductions_list_rows_not_run(tmp_path):
    from report_fixtures import _record, write_runs

    from harness.report import build_report

    rec = _record("r0", "faster", 0, map07=0.70, test_s=0.03, train_s=60.0,
                  stages={"backbone": 0.01, "proposals": 0.01, "head": 0.01, "postprocess": 0.0})
    rec.update({"preset": "faster-table9", "preset_row": "lambda 1", "scale": "cpu"})
    write_runs(tmp_path / "res", [rec])
    build_report(tmp_path / "res", tmp_path / "out")
    ours = {r["row"]: r["status"] for r in _csv(tmp_path / "out", "reproduce_faster-table9.csv")}
    assert ours == {"lambda 0.1": "not run", "lambda 1": "ok", "lambda 10": "not run", "lambda 100": "not run"}
