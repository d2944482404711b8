"""The Detections section: the same test images with the ground truth and each detector's boxes.

Per dataset, the latest ok run of each detector that kept a gallery
(``results/<run_id>/gallery.json``, :mod:`harness.evaluation.gallery`). A row is
one test image (the same pixels: rows are matched by the image's digest); its
first picture is the ground truth, then one per detector, with the detections
scoring at least :data:`SHOW_SCORE` sorted into true positives, false positives
and missed ground truth at IoU 0.5 (:func:`~harness.evaluation.gallery.match_boxes`).
Pictures are the runs' thumbnails with the boxes drawn here
(:func:`~harness.evaluation.drawing.draw_boxes`), JPEG quality 70.
"""
from __future__ import annotations

import base64
import io
from typing import Any

import pandas as pd
from PIL import Image

from harness.evaluation.drawing import Box, draw_boxes, jpeg_bytes
from harness.evaluation.gallery import GALLERY_FILE, match_boxes, read_gallery

from .blocks import Gallery, Note, Panel, Section, slug
from .records import RecordSet, detector_label, detector_order

SHOW_SCORE = 0.5
MAX_ROWS = 12
JPEG_QUALITY = 70


def _latest_galleries(rs: RecordSet, runs: pd.DataFrame) -> list[tuple[str, str, dict[str, Any]]]:
    """``(detector, run_id, gallery)`` of the latest ok run of each detector that has a gallery."""
    found = []
    for det in sorted(runs["detector"].unique(), key=detector_order):
        for _, row in runs[runs["detector"] == det].sort_values("_order", ascending=False).iterrows():
            gallery = read_gallery(rs.results_dir / str(row["run_id"]) / GALLERY_FILE)
            if gallery is not None and gallery["images"]:
                found.append((det, str(row["run_id"]), gallery))
                break
    return found


def _picture(image: dict[str, Any], boxes: list[Box]) -> tuple[bytes, int, int]:
    thumb = Image.open(io.BytesIO(base64.b64decode(image["thumb_jpeg"])))
    drawn = draw_boxes(thumb, boxes, scale=float(image.get("thumb_scale", 1.0)))
    return jpeg_bytes(drawn, quality=JPEG_QUALITY), drawn.size[0], drawn.size[1]


def _detector_panel(det: str, run_id: str, image: dict[str, Any]) -> Panel:
    shown = [d for d in image.get("detections", []) if float(d.get("score", 0)) >= SHOW_SCORE]
    tp, found = match_boxes(shown, image.get("gt", []))
    boxes = [Box(tuple(g["box"]), str(g["class"]), "missed") for g, f in zip(image.get("gt", []), found) if not f]
    boxes += [Box(tuple(d["box"]), f"{d['class']} {float(d['score']):.2f}", "tp" if t else "fp")
              for d, t in sorted(zip(shown, tp), key=lambda dt: float(dt[0]["score"]))]  # best drawn last (on top)
    jpeg, w, h = _picture(image, boxes)
    title = (f"{detector_label(det)}: {sum(tp)} TP, {len(tp) - sum(tp)} FP, "
             f"{len(found) - sum(found)} missed (run {run_id})")
    return Panel(jpeg, title, f"{detector_label(det)} detections on {image.get('key')}", w, h)


def _gallery(dataset: str, galleries: list[tuple[str, str, dict[str, Any]]]) -> Gallery:
    digests: list[str] = []
    for _, _, gallery in galleries:  # rows: every image of any run's gallery, first seen first
        digests += [im.get("digest") for im in gallery["images"] if im.get("digest") not in digests]
    digests = digests[:MAX_ROWS]
    labels, rows = [], []
    for digest in digests:
        per_run = {run_id: next((im for im in g["images"] if im.get("digest") == digest), None)
                   for _, run_id, g in galleries}
        first = next(im for im in per_run.values() if im is not None)
        jpeg, w, h = _picture(first, [Box(tuple(g["box"]), str(g["class"]), "gt") for g in first.get("gt", [])])
        panels = [Panel(jpeg, f"ground truth: {len(first.get('gt', []))} boxes",
                        f"ground truth of {first.get('key')}", w, h)]
        panels += [_detector_panel(det, run_id, per_run[run_id]) for det, run_id, _ in galleries
                   if per_run[run_id] is not None]
        missing = [detector_label(det) for det, run_id, _ in galleries if per_run[run_id] is None]
        label = f"{first.get('key')} ({first.get('width')}×{first.get('height')} px)"
        labels.append(label + (f"; not in the gallery of: {', '.join(missing)}" if missing else ""))
        rows.append(panels)
    return Gallery(name=f"detections_{slug(dataset)}", title=f"{dataset}: ground truth and detections",
                   labels=labels, rows=rows,
                   caption=f"Detections scoring at least {SHOW_SCORE}: green true positive, vermillion false "
                   "positive (IoU with a ground-truth box of its class below 0.5, or that box already taken), "
                   "orange dashed: ground truth no shown detection found; blue: ground truth. Runs: "
                   + ", ".join(f"{detector_label(d)} {r}" for d, r, _ in galleries) + ".")


def detections(rs: RecordSet) -> Section:
    sec = Section("Detections", "detections",
                  intro="What the detectors see: the same test images (picked by test.gallery_seed, the same "
                  "for every run of a dataset) with the ground truth and each detector's boxes, from the latest "
                  "ok run of each detector on that dataset.")
    ok = rs.ok
    for dataset in ok["dataset"].unique() if not ok.empty else []:
        galleries = _latest_galleries(rs, ok[ok["dataset"] == dataset])
        if galleries:
            sec.add(_gallery(str(dataset), galleries))
    if not sec.blocks:
        sec.add(Note("No run kept a gallery (results/<run_id>/gallery.json; written by runs since "
                     "test.gallery_images was added, unless it is 0)."))
    return sec
