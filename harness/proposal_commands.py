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

from harness.config import RunConfig
from harness.data.base import DetectionDataset

if TYPE_CHECKING:
    from harness.proposal_cache import ProposalCache


class Mode(str, Enum):
    fast = "fast"
    quality = "quality"


class Profile(str, Enum):
    cpu = "cpu"
    paper = "paper"


def _setup(
    dataset: str, splits: list[str] | None, profile: str, overrides: dict[str, object], set_: list[str]
) -> tuple[RunConfig, list[DetectionDataset]]:
    """Config (as for ``run --detector fast``) and the datasets of ``splits`` (default: the run's two)."""
    from harness import data as data_layer
    from harness.cli import _fail
    from harness.config import ConfigError, build_config, parse_set_options

    try:
        cfg = build_config(
            detector="fast", profile=profile, overrides={"data.dataset": dataset, **overrides, **parse_set_options(set_)}
        )
        if cfg.proposals.source != "selective_search":
            _fail("proposals.source=file: external proposals need no precomputation")
        d = cfg.data
        default_train, default_test = data_layer.default_splits(d.dataset)
        names = splits or [d.train_split or default_train, d.test_split or default_test]
        sets = [
            data_layer.build_dataset(d.dataset, s, min_size=d.min_size, max_size=d.max_size, synthetic=d.synthetic,
                                     synthetic_hard=d.synthetic_hard)
            for s in dict.fromkeys(names)
        ]
    except (ConfigError, data_layer.DatasetError) as err:
        _fail(str(err))
    return cfg, sets


def proposals_command(
    dataset: str = typer.Option("synthetic", help="synthetic | synthetic-hard | voc:DIR | coco:ANNOTATIONS.json[:IMAGES_DIR]"),
    split: Optional[list[str]] = typer.Option(None, "--split", help="Split to cover (repeatable); default: the run's train and test splits."),
    workers: Optional[int] = typer.Option(None, min=0, help="Worker processes (default: one per usable core; 0: in this process, no pool)."),
    mode: Mode = typer.Option(Mode.fast, help="Selective search mode: fast (the papers') or quality."),
    limit: Optional[int] = typer.Option(None, min=1, help="Only the first N images of each split."),
    profile: Profile = typer.Option(Profile.cpu, help="Profile whose proposal settings to use (as for run)."),
    set_: list[str] = typer.Option([], "--set", help="Override proposals.* keys (see `harness config`)."),
    export: Optional[Path] = typer.Option(
        None, help="Also write the splits' proposals to this external-proposal JSON file (format: README), for a "
                   "machine without OpenCV contrib: `run --set proposals.source=file --set proposals.file=FILE`."),
) -> None:
    """Precompute selective-search proposals into the cache, in parallel; resumable (cached images are skipped)."""
    from harness.cli import _fail, _progress, console, out
    from harness.proposal_stage import selective_search_params
    from harness.proposal_cache import ProposalCache
    from harness.proposals import default_workers, pass_summary, precompute

    overrides: dict[str, object] = {"proposals.mode": mode.value}
    if workers is not None:
        overrides["proposals.workers"] = workers
    if export is not None and limit is not None:
        _fail("--export writes whole splits (a run needs every image's proposals); drop --limit")
    cfg, sets = _setup(dataset, split, profile.value, overrides, set_)
    cache = ProposalCache(cfg.proposals.cache_dir, selective_search_params(cfg.proposals))
    console.print(f"selective search ({cfg.proposals.mode}) -> {escape(str(cache.dir))}", highlight=False)
    try:
        with _progress() as progress:
            runs = precompute(sets, cache, workers=cfg.proposals.workers, progress=progress,
                              limits=[limit] * len(sets))
    except KeyboardInterrupt:
        _, entries = cache.usage()
        console.print(f"[yellow]interrupted[/]: {entries} entries are cached; run the same command again to resume")
        raise typer.Exit(130)
    table = Table(title="selective-search proposals")
    table.caption = "cached: skipped (already in the cache); s/img: median selective-search seconds per image"
    for col in ("split", "images", "cached", "computed", "proposals/img", "s/img"):
        table.add_column(col, justify="right")
    for ds, r in zip(sets, runs):
        table.add_row(escape(ds.name), str(r.images), str(r.hits), str(r.computed), f"{r.proposals_per_image:.0f}",
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
    from harness.external_proposals import image_keys, save_proposal_file
    from harness.proposals import lookup_or_compute

    boxes = {}
    for ds in sets:
        for i in range(len(ds)):
            entry, _ = lookup_or_compute(cache, ds.load_image(i))
            boxes[image_keys(ds, i)[0]] = entry.boxes
    path.parent.mkdir(parents=True, exist_ok=True)
    save_proposal_file(path, boxes)
    return len(boxes)


def bench_proposals_command(
    dataset: str = typer.Option(..., help="synthetic | voc:DIR | coco:ANNOTATIONS.json[:IMAGES_DIR]"),
    split: Optional[list[str]] = typer.Option(None, "--split", help="Split to cover (repeatable); default: the run's train and test splits."),
    workers: int = typer.Option(2, min=2, help="Processes of the parallel pass (compared against 1)."),
    limit: Optional[int] = typer.Option(None, min=1, help="Only the first N images of each split."),
    repeats: int = typer.Option(2, min=1, help="Runs of each pass; the best throughput counts."),
    profile: Profile = typer.Option(Profile.cpu),
    results: Path = typer.Option(Path("results"), help="bench.jsonl is appended here."),
    set_: list[str] = typer.Option([], "--set", help="Override proposals.* keys."),
) -> None:
    """Benchmark the proposal stage: N workers vs 1 (target >= 1.8x), cache hit vs recompute (>= 100x)."""
    import torch

    from harness.cli import _progress, console, out
    from harness.proposal_bench import bench_proposals
    from harness.proposal_stage import selective_search_params
    from harness.results import append_record, device_info, git_sha, library_versions, now_iso

    cfg, sets = _setup(dataset, split, profile.value, {}, set_)
    started = now_iso()
    with _progress() as progress:
        record = bench_proposals(sets, selective_search_params(cfg.proposals), workers=workers, limit=limit,
                                 repeats=repeats, progress=progress)
    record.update({"started": started, "finished": now_iso(), "git_sha": git_sha(),
                   "versions": library_versions(), "device": device_info(torch.device("cpu"))})
    append_record(results / "bench.jsonl", record)
    table = Table(title=f"bench-proposals: {record['images']} images, {escape(record['device']['name'])}")
    for col in ("figure", "value", "target"):
        table.add_column(col)
    for n, runs in record["passes"].items():
        table.add_row(f"{n}: images/s (best of {len(runs)})", f"{max(p['images_per_s'] for p in runs):.2f}", "")
    table.add_row(f"speed-up {workers} workers / 1", f"{record['ratios']['parallel_speedup']:.2f}x", ">= 1.8x")
    table.add_row("selective search s/img (median)", f"{record['search_s_per_image_median']:.4f}", "")
    table.add_row("cache hit s/img (median)", f"{record['cache_hit_s_per_image_median']:.6f}", "")
    table.add_row("hit vs recompute", f"{record['ratios']['hit_vs_recompute']:.0f}x", ">= 100x")
    table.add_row("proposals/img", f"{record['proposals_per_image']:.0f}", "")
    out.print(table)
    console.print(f"appended to {escape(str(results / 'bench.jsonl'))}", highlight=False)
