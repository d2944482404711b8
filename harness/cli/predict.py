"""``harness predict``: run a finished run's detector on your own images."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape

from harness.cli.ui import Device, console, fail, progress_bars


def predict_command(
    run_id: str = typer.Argument(..., metavar="RUN_ID", help="A run id in --results (a folder name; see runs.jsonl)."),
    images: list[Path] = typer.Argument(..., metavar="IMAGES...",
                                        help="Image files and/or folders (searched recursively for .jpg .jpeg "
                                             ".png .bmp .tif .tiff .webp)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Output folder (default: predictions/RUN_ID)."),
    score_thresh: float = typer.Option(0.5, "--score-thresh", help="Keep detections scoring at least this."),
    results: Path = typer.Option(Path("results"), "--results", help="Folder of runs.jsonl and the runs' folders."),
    device: Device = typer.Option("auto", help="auto picks CUDA when available."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log details."),
) -> None:
    """Detect objects in your images with a trained run: loads RUN_ID's config and checkpoint, runs its
    detector on IMAGES (R-CNN and Fast R-CNN: selective search computed on the fly, through the proposal
    cache), and writes OUT/detections.json (COCO style: file_name, category_id, category_name, bbox
    [x, y, w, h] in pixels, score) and one annotated JPEG per image under OUT (same relative paths).
    An unreadable image is skipped with a warning; the rest are processed.
    """
    from harness.config import ConfigError
    from harness.data.errors import DatasetError
    from harness.run.checkpoint import CheckpointError
    from harness.run.predict import (
        check_threshold,
        collect_images,
        find_record,
        load_detector,
        predict_images,
    )

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    out = out if out is not None else Path("predictions") / run_id
    try:
        check_threshold(score_thresh)
        files = collect_images(images)
        record = find_record(results, run_id)
        model, cfg = load_detector(record, results, device.value)
    except (ConfigError, DatasetError, CheckpointError) as err:
        fail(str(err))
    with progress_bars() as progress:
        done = predict_images(model, cfg, record, files, out, score_thresh=score_thresh, progress=progress)
    for message in done.skipped:
        console.print(f"[yellow]skipped:[/] {escape(message)}", highlight=False, soft_wrap=True)
    if not done.images:
        fail(f"none of the {len(files)} image(s) could be read")
    console.print(f"{len(done.detections)} detection(s) in {len(done.images)} image(s) "
                  f"(score >= {score_thresh}); wrote {escape(str(out / 'detections.json'))} and the annotated "
                  f"JPEGs under {escape(str(out))}", highlight=False)
