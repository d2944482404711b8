"""``harness sweep`` and ``harness reproduce``: grids of runs and the papers' tables as presets; both resumable."""
from __future__ import annotations

import time
from pathlib import Path
from typing import Optional

import typer
from rich.table import Table

from harness.cli.ui import Detector, Profile, console, fail, out, progress_bars


def sweep(
    detector: Detector = typer.Option("faster", help="Detector for every run of the grid."),
    grid: list[str] = typer.Option(..., "--grid", help="key=v1,v2 (semicolons for tuple values: "
                                   "model.anchor_sizes='32,64;64,128'); repeat for a product."),
    seeds: int = typer.Option(1, min=1, help="Seeds 0..N-1 per grid point (error bars in the report)."),
    profile: Profile = typer.Option("cpu"),
    results: Path = typer.Option(Path("results")),
    set_: list[str] = typer.Option([], "--set", help="Overrides shared by every run."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the runs without running them."),
) -> None:
    """Run a grid of configs x seeds; resumable: points with an ok record are skipped."""
    from harness.config import ConfigError, parse_set_options
    from harness.config.sweep import expand, parse_grid
    from harness.run.runner import execute
    from harness.run.sweep import finished_keys, run_sweep

    try:
        points = expand(detector.value, parse_grid(grid), seeds=seeds, base=parse_set_options(set_),
                        profile=profile.value)
    except ConfigError as err:
        fail(str(err))
    if dry_run:
        done = finished_keys(results)
        for point in points:
            state = "done" if point.key in done else "todo"
            typer.echo(f"{state}  {point.key}  " + " ".join(f"{k}={v}" for k, v in point.overrides.items()))
        return

    def run_one(cfg, resume=None):
        with progress_bars() as progress:
            return execute(cfg, results_dir=results, progress=progress, resume=resume)

    try:
        counts = run_sweep(points, results_dir=results, execute=run_one,
                           say=lambda msg: console.print(msg, markup=False, highlight=False))
    except KeyboardInterrupt:
        console.print("[yellow]sweep interrupted[/]: run it again to resume")
        raise typer.Exit(130)
    console.print(f"sweep: {counts['ran']} ran, {counts['skipped']} skipped, {counts['failed']} failed")
    if counts["failed"]:
        raise typer.Exit(1)


DEFAULT_SEEDS = {"cpu": 3, "paper": 1}  # cpu scale: enough seeds for a 95 % interval per row


def reproduce(
    table: Optional[str] = typer.Argument(None, help="Preset id (see --list)."),
    list_: bool = typer.Option(False, "--list", help="List the presets."),
    all_: bool = typer.Option(False, "--all", help="Every preset, one after the other, into one results folder "
                                                   "(resumable: run the same command again after a stop)."),
    scale: Profile = typer.Option("cpu", help="cpu: reduced, runs on 2 CPU cores; paper: the papers' settings."),
    dataset: Optional[str] = typer.Option(None, help="Dataset for every run (default: the scale's)."),
    weights: Optional[Path] = typer.Option(None, help="Backbone weights file (paper scale needs ImageNet weights)."),
    seeds: Optional[int] = typer.Option(None, min=1, help="Seeds per row (default: 3 at cpu scale, for the "
                                                          "report's 95 % intervals and verdicts; 1 at paper scale)."),
    results: Path = typer.Option(Path("results")),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the runs and their configs; run nothing."),
    set_: list[str] = typer.Option([], "--set", help="key=value for every run of the preset (e.g. a smaller "
                                   "data.synthetic.train_images); not a key the table varies."),
) -> None:
    """Reproduce a paper's table (or an ablation, or --all of them) as recorded runs; resumable."""
    from harness.config.presets import BY_ID, PRESETS

    if list_ or (table is None and not all_):
        t = Table(title="presets (harness reproduce ID)")
        for col in ("id", "paper", "table", "what", "runs", "cpu scale (min)"):
            t.add_column(col, no_wrap=col == "id")
        for p in PRESETS:
            t.add_row(p.id, p.paper, p.table, p.title, str(len(p.rows)),
                      f"~{p.cpu_minutes(DEFAULT_SEEDS['cpu']):.0f}")
        out.print(t)
        if table is None and not list_:
            raise typer.Exit(2)
        return
    if all_ and table is not None:
        fail("give a preset id or --all, not both")
    if table is not None and table not in BY_ID:
        fail(f"unknown preset {table!r}; `harness reproduce --list` shows them")
    n_seeds = seeds if seeds is not None else DEFAULT_SEEDS[scale.value]
    presets = PRESETS if all_ else (BY_ID[table],)
    # every preset's runs first: a bad option for any of them stops here, not hours into --all
    resolved = [(p, *_resolve_runs(p, scale.value, n_seeds, dataset, weights, set_)) for p in presets]
    if all_ and scale.value == "cpu":
        _say_expected_all([run for _, _, runs in resolved for run in runs], len(presets), results)
    failed = 0
    for preset, extra, runs in resolved:
        counts = _reproduce_preset(preset, extra, runs, scale.value, n_seeds, results, dry_run)
        failed += counts.get("failed", 0)
    if failed:
        raise typer.Exit(1)


def _resolve_runs(preset, scale: str, seeds: int, dataset: str | None, weights: Path | None,
                  set_: list[str]) -> tuple[dict[str, object], list]:
    """``(the options every run of ``preset`` gets, its (row, point) runs)``; bad options exit 2."""
    from harness.config import ConfigError, parse_set_options
    from harness.config.presets import check_extra, resolve

    extra: dict[str, object] = {}
    if dataset:
        extra["data.dataset"] = dataset
    if weights:
        extra["model.weights"] = str(weights)
    try:
        extra.update(parse_set_options(set_))
        check_extra(preset, extra)
        return extra, resolve(preset, scale=scale, seeds=seeds, extra=extra)
    except ConfigError as err:
        fail(str(err))


def _say_expected_all(runs: list, n_presets: int, results: Path) -> None:
    """``reproduce --all``'s expectation for the whole set (``runs``: every preset's) at cpu scale: each
    distinct run once, less the runs already ``ok`` in ``results``, plus the built-in pre-training when a run
    needs it and it is not cached."""
    from harness.config.presets import expected_minutes
    from harness.run.sweep import finished_keys
    from harness.train.pretrain import cached_path, init_mode

    done = finished_keys(results)
    distinct, todo, minutes = expected_minutes(runs, done=done)
    backbones = {p.config.model.backbone for _, p in runs
                 if p.key not in done and init_mode(p.config).startswith("pretrained")}
    untrained = sorted(b for b in backbones if not cached_path(b).is_file())
    console.print(
        f"reproduce --all: {len(runs)} runs in {n_presets} presets, {distinct} distinct (a row shared by "
        f"presets runs once), {distinct - todo} already ok in {results}: expected about {minutes:.0f} min on 2 "
        "CPU cores for the rest" + (f", plus pre-training {', '.join(untrained)} once (about 10 min)"
                                    if untrained else ""), highlight=False)


def _reproduce_preset(preset, extra: dict[str, object], runs: list, scale: str, seeds: int, results: Path,
                      dry_run: bool) -> dict[str, int]:
    """Run (or list) one preset's ``runs`` (its rows × seeds, resolved with the options ``extra``) into
    ``results``; appends its wall time to reproduce.jsonl."""
    from harness.config import to_dict
    from harness.config.presets import PAPER_NEEDS, reductions
    from harness.config.sweep import SweepPoint
    from harness.run.device import resolve_device
    from harness.run.results import append_record, now_iso, record_envelope
    from harness.run.runner import execute
    from harness.run.sweep import run_sweep

    console.print(f"{preset.id}: {preset.paper} {preset.table}: {preset.title}", highlight=False)
    if scale == "paper":
        console.print(f"paper scale needs {PAPER_NEEDS}", highlight=False)
    else:
        console.print(f"cpu scale: expected about {preset.cpu_minutes(seeds):.0f} min on 2 CPU cores", highlight=False)
    if preset.note:
        console.print(f"note: {preset.note}", highlight=False)
    if dry_run:
        import json

        for row, point in runs:
            typer.echo(json.dumps({"preset": preset.id, "row": row.label, "detector": row.detector,
                                   "overrides": point.overrides, "config": to_dict(point.config)}, default=str))
        return {}
    rows = {point.key: row for row, point in runs}

    def run_one(cfg, resume=None):
        with progress_bars() as progress:
            # the tag names the preset that ran it; the report matches the run to every preset row by config
            row = rows[SweepPoint({}, cfg).key]
            tags = {"preset": preset.id, "preset_row": row.label, "scale": scale, "preset_overrides": extra,
                    **({"reductions": reductions(row, cfg)} if scale == "cpu" else {})}
            return execute(cfg, results_dir=results, progress=progress, tags=tags, resume=resume)

    started, clock = now_iso(), time.perf_counter()
    stated = preset.cpu_minutes(seeds) if scale == "cpu" else None
    counts = {"ran": 0, "skipped": 0, "failed": 0}  # kept current by run_sweep

    def record_invocation(interrupted: bool) -> float:
        # One record per invocation, an interrupted one too (its minutes count in the set's wall time): the
        # preset's wall time against the time it states. Only an invocation that ran every row (none
        # skipped, none failed, not stopped) says whether the preset fits.
        minutes = (time.perf_counter() - clock) / 60
        whole = counts["ran"] == len(runs) and not counts["failed"] and not interrupted
        append_record(results / "reproduce.jsonl", {
            "kind": "reproduce", "preset": preset.id, "scale": scale, "seeds": seeds, "runs": len(runs),
            **counts, "interrupted": interrupted, "complete": whole, "wall_minutes": minutes,
            "stated_minutes": stated, "within_stated": minutes <= stated if whole and stated is not None else None,
            **record_envelope(started, resolve_device("auto")), "dataset": runs[0][1].config.data.dataset})
        return minutes

    try:
        run_sweep([p for _, p in runs], results_dir=results, execute=run_one, counts=counts,
                  say=lambda msg: console.print(msg, markup=False, highlight=False))
    except KeyboardInterrupt:
        record_invocation(interrupted=True)
        console.print("[yellow]interrupted[/]: run the same command again to resume")
        raise typer.Exit(130)
    minutes = record_invocation(interrupted=False)
    console.print(f"{preset.id}: {counts['ran']} ran, {counts['skipped']} skipped, {counts['failed']} failed "
                  f"in {minutes:.1f} min" + (f" (stated ~{stated:.0f} min)" if stated else "")
                  + "; `harness report` shows our table beside the paper's")
    return counts
