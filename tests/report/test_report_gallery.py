"""The report's Detections gallery and Training curves (issue 19 items 4-5), read from the run folders."""
from __future__ import annotations

import base64
import copy
import io
import re

import numpy as np
import pytest
from PIL import Image
from report_fixtures import GALLERY_RUNS, make_records, write_run_files, write_runs

from harness.report import build_report


def _section(text: str, anchor: str) -> str:
    start = text.index(f'<section id="{anchor}">')
    return text[start:text.index("</section>", start)]


def _decode(src: str) -> Image.Image:
    im = Image.open(io.BytesIO(base64.b64decode(src, validate=True)))
    im.load()
    return im


def test_gallery_shows_ground_truth_and_three_detectors(html_report):
    text = html_report[0].read_text(encoding="utf-8")
    gallery = _section(text, "detections")
    assert 'id="gallery-detections_synthetic"' in gallery
    rows = gallery.split('<div class="gallery-row">')[1:]
    assert len(rows) == 8  # test.gallery_images of the fixture runs
    for row in rows:
        titles = re.findall(r"<figcaption>([^<]*)</figcaption>", row)
        assert [t.split(":")[0] for t in titles] == ["ground truth", "R-CNN", "Fast R-CNN", "Faster R-CNN"]
        srcs = re.findall(r'<img src="data:image/jpeg;base64,([^"]+)"', row)
        assert len(srcs) == 4
        for src in srcs:
            im = _decode(src)
            assert im.format == "JPEG" and im.size == (320, 240)
        # Faster R-CNN: the first box found, a false positive, the second box missed (see report_fixtures)
        assert "Faster R-CNN: 1 TP, 1 FP, 1 missed (run r-faster-0)" in titles
    # R-CNN's boxes are shifted by 12, 24 or 36 px: only the first shift keeps IoU >= 0.5
    assert sum("R-CNN: 1 TP, 1 FP, 1 missed (run r-rcnn-0)" in r for r in rows) >= 1
    assert sum("R-CNN: 0 TP, 2 FP, 2 missed (run r-rcnn-0)" in r for r in rows) >= 1


def test_gallery_pictures_have_the_kind_colours(html_report):
    """The ground-truth picture has blue boxes; the Faster R-CNN one green (TP), vermillion (FP), orange (missed)."""
    from harness.evaluation.drawing import COLOURS

    text = _section(html_report[0].read_text(encoding="utf-8"), "detections")
    row = text.split('<div class="gallery-row">')[1]
    srcs = re.findall(r'<img src="data:image/jpeg;base64,([^"]+)"', row)

    def has(im: Image.Image, colour: tuple[int, int, int]) -> bool:
        pixels = np.asarray(im.convert("RGB"), dtype=int).reshape(-1, 3)
        return bool((np.abs(pixels - np.array(colour)).sum(axis=1) < 40).any())

    assert has(_decode(srcs[0]), COLOURS["gt"])
    faster = _decode(srcs[3])
    assert all(has(faster, COLOURS[k]) for k in ("tp", "fp", "missed"))


def test_loss_curves_per_detector(html_report):
    text = _section(html_report[0].read_text(encoding="utf-8"), "training")
    m = re.search(r'id="fig-loss_curves_synthetic"><img src="data:image/png;base64,([^"]+)"', text)
    assert m
    assert _decode(m.group(1)).size[0] > 600


def test_no_gallery_without_run_folders(tmp_path):
    results = write_runs(tmp_path / "results", make_records())
    text = build_report(results, tmp_path / "out").read_text(encoding="utf-8")
    assert "No run kept a gallery" in _section(text, "detections")
    assert "No run kept a training log" in _section(text, "training")


def test_markdown_writes_the_gallery_pictures(tmp_path):
    results = write_runs(tmp_path / "results", make_records())
    write_run_files(results)
    path = build_report(results, tmp_path / "md", fmt="md")
    pictures = sorted((tmp_path / "md" / "figures").glob("detections_synthetic_*.jpg"))
    assert len(pictures) == 8 * 4
    assert "figures/detections_synthetic_0_0.jpg" in path.read_text(encoding="utf-8")


@pytest.mark.slow
def test_thirty_runs_stay_under_five_megabytes(tmp_path):
    """30 runs (10 per detector), each with a gallery and a training log: the page stays small."""
    base = [r for r in make_records() if r["run_id"] in GALLERY_RUNS]
    records, files = [], {}
    for k in range(10):
        for rec in base:
            copy_ = copy.deepcopy(rec)
            copy_["run_id"] = f"{rec['run_id']}-{k}"
            records.append(copy_)
            files[copy_["run_id"]] = GALLERY_RUNS[rec["run_id"]]
    results = write_runs(tmp_path / "results", records)
    write_run_files(results, files)
    page = build_report(results, tmp_path / "out")
    assert page.stat().st_size < 5_000_000
