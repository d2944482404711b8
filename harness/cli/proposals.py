"""``harness proposals`` and ``harness bench-proposals``: the typer commands (registered in harness/cli.py).

Both build the same config ``harness run --detector fast`` builds (same profile
and ``--set`` keys), so they fill and measure exactly the cache entries a run
will read.
"""
from __future__ import annotations

from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import typer
from rich.markup import escape
from rich.table import Table

from harness.cli.ui import Profile, console, fail, out, progress_bars
from harness.config import RunConfig
from harness.data.base import DetectionDataset

if TYPE_CHECKING:
    from harness.proposals.cache import ProposalCache


class Mode(str, Enum):
    fast = "fast"
    quality = "quality"


def proposal_setup(
    dataset: str, splits: list[str] | None, profile: str, overrides: dict[str, object], set_: list[str]
) -> tuple[RunConfig, list[DetectionDataset]]:
    """Config (as for ``run --detector fast``) and the datasets of ``splits`` (default: the run's two)."""
    from harness import data as data_layer
    from harness.config import ConfigError, build_config, parse_set_options

    try:
        cfg = build_config(
            detector="fast", profile=profile, overrides={"data.dataset": dataset, **overrides, **parse_set_options(set_)}
        )
        if cfg.proposals.source != "selective_search":
            fail("proposals.source=file: external proposals need no precomputation")
        d = cfg.data
        options = data_layer.dataset_options(d)
        default_train, default_test = data_layer.default_splits(d.dataset, **options)
        names = splits or [d.train_split or default_train, d.test_split or default_test]
        sets = [
            data_layer.build_dataset(d.dataset, s, min_size=d.min_size, max_size=d.max_size, synthetic=d.synthetic,
                                     **options)
            for s in dict.fromkeys(names)
        ]
    except (ConfigError, data_layer.DatasetError) as err:
        fail(str(err))
    return cfg, sets


def proposals_command(
    dataset: str = typer.Option("synthetic", help="synthetic | synthetic-hard | voc:DIR | "
                                                  "coco:ANNOTATIONS.json[,TEST.json][:IMAGES_DIR] | yolo:DIR"),
    split: Optional[list[str]] = typer.Option(None, "--split", help="Split to cover (repeatable); default: the run's train and test splits."),
    workers: Optional[int] = typer.Option(None, min=0, help="Worker processes (default: one per usable core; 0: in this process, no pool)."),
    mode: Mode = typer.Option(Mode.fast, help="Selective search mode: fast (the papers') or quality."),
    limit: Optional[int] = typer.Option(None, min=1, help="Only the first N images of each split."),
    profile: Profile = typer.Option("cpu", help="Profile whose proposal settings to use (as for run)."),
    set_: list[str] = typer.Option([], "--set", help="Override proposals.* keys (see `harness config`)."),
    export: Optional[Path] = typer.Option(
        None, help="Also write the splits' proposals to this external-proposal JSON file (format: README), for a "
                   "machine without OpenCV contrib: `run --set proposals.source=file --set proposals.file=FILE`."),
) -> None:
    """Precompute selective-search proposals into the cache, in parallel; resumable (cached images are skipped)."""
    from harness.proposals.cache import ProposalCache
    from harness.proposals.precompute import default_workers, pass_summary, precompute
    from harness.proposals.stage import selective_search_params

    overrides: dict[str, object] = {"proposals.mode": mode.value}
    if workers is not None:
        overrides["proposals.workers"] = workers
    if export is not None and limit is not None:
        fail("--export writes whole splits (a run needs every image's proposals); drop --limit")
    cfg, sets = proposal_setup(dataset, split, profile.value, overrides, set_)
    cache = ProposalCache(cfg.proposals.cache_dir, selective_search_params(cfg.proposals))
    console.print(f"selective search ({cfg.proposals.mode}) -> {escape(str(cache.dir))}", highlight=False)
    try:
        with progress_bars() as progress:
            runs = precompute(sets, cache, workers=cfg.proposals.workers, progress=progress,
                              limits=[limit] * len(sets))
    except KeyboardInterrupt:
        _, entries = cache.usage()
        console.print(f"[yellow]interrupted[/]: {entries} entries are cached; run the same command again to resume")
        raise typer.Exit(130)
    table = Table(title="selective-search proposals")
    table.caption = ("cached: skipped (already in the cache); proposals/img: min / mean / max boxes per image; "
                     "s/img: median selective-search seconds per image")
    for col in ("split", "images", "cached", "computed", "proposals/img", "s/img"):
        table.add_column(col, justify="right")
    for ds, r in zip(sets, runs):
        spread = f"{min(r.counts)} / {r.proposals_per_image:.0f} / {max(r.counts)}" if r.counts else "-"
        table.add_row(escape(ds.name), str(r.images), str(r.hits), str(r.computed), spread,
                      f"{r.compute_s_per_image or 0:.3f}")
    out.print(table)
    total = pass_summary(runs)
    n = default_workers() if cfg.proposals.workers is None else cfg.proposals.workers
    how = "in this process" if n == 0 else f"with {n} worker process{'es' if n > 1 else ''}"
    console.print(f"{total['images']} images in {total['wall_s']:.1f} s {how}: "
                  f"{total['images_per_s'] or 0:.2f} images/s", highlight=False)
    size, entries = cache.usage()
    console.print(f"cache: {entries} entries, {size / 2**20:.1f} MiB in {escape(str(cache.dir))}", highlight=False)
    if export is not None:
        images = export_proposal_file(export, sets, cache)
        console.print(f"exported {images} images' proposals to {escape(str(export))}", highlight=False)


def export_proposal_file(path: Path, sets: list[DetectionDataset], cache: ProposalCache) -> int:
    """Write every image of ``sets`` with its cached selective-search boxes (file order = selective search's
    ranking) to an external-proposal file; images missing from the cache are computed. Returns the image count."""
    from harness.proposals.external import image_keys, save_proposal_file
    from harness.proposals.precompute import lookup_or_compute

    boxes = {}
    for ds in sets:
        for i in range(len(ds)):
            entry, _ = lookup_or_compute(cache, ds.load_image(i))
            boxes[image_keys(ds, i)[0]] = entry.boxes
    path.parent.mkdir(parents=True, exist_ok=True)
    save_proposal_file(path, boxes)
    return len(boxes)
