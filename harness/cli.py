"""``harness``: the command line. Thin commands: parse, build config, call one function."""
from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Iterator, Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.markup import escape
from rich.table import Table

app = typer.Typer(
    help="Benchmark and ablation harness for R-CNN, Fast R-CNN and Faster R-CNN "
    "(one backbone, one data layer, one evaluator).",
    no_args_is_help=True,
    add_completion=False,
)
console = Console(stderr=True)
out = Console()


class Detector(str, Enum):
    faster = "faster"
    fast = "fast"
    rcnn = "rcnn"


class Device(str, Enum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


class Profile(str, Enum):
    cpu = "cpu"
    paper = "paper"


def _fail(message: str, code: int = 2) -> None:
    # soft_wrap: one line, however long, so file paths in it stay whole and copyable
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


class _Bar:
    """Adapter from rich's Progress to the engine's ``progress(desc, total)`` callback."""

    def __init__(self, progress: Progress, desc: str, total: int) -> None:
        self.progress, self.task = progress, progress.add_task(desc, total=total, loss="")

    def advance(self, n: int = 1, **fields: float) -> None:
        extra = {k: f"{k} {v:.3f}" for k, v in fields.items()}
        self.progress.update(self.task, advance=n, **extra)

    def close(self) -> None:
        self.progress.refresh()


@contextmanager
def _progress() -> Iterator:
    columns = [
        TextColumn("[bold]{task.description:>5}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[loss]}"),
    ]
    with Progress(*columns, console=console, transient=False) as progress:
        yield lambda desc, total: _Bar(progress, desc, total)


def _fmt(value: object, digits: int = 3) -> str:
    return "-" if value is None else (f"{value:.{digits}f}" if isinstance(value, float) else str(value))


def _summary(record: dict) -> Table:
    m, t = record.get("metrics", {}), record.get("timing", {})
    table = Table(title=f"run {record['run_id']}  ({record['status']})", show_header=True)
    table.add_column("what")
    table.add_column("value", justify="right")
    rows = [
        ("detector / backbone / init", f"{record['detector']} / {record['backbone']} / {record['init']}"),
        ("dataset", record["dataset"]),
        ("device", f"{record['device']['type']}: {record['device']['name']} ({record['device']['threads']} threads)"),
        ("VOC mAP50 (07 11-point)", _fmt(m.get("map50_voc07"))),
        ("VOC mAP50 (area)", _fmt(m.get("map50_area"))),
        ("COCO AP / AP50", f"{_fmt(m.get('coco_ap'))} / {_fmt(m.get('coco_ap50'))}"),
        ("train time (s)", _fmt(t.get("train_s"), 1)),
        ("test s/img median (p90)", f"{_fmt((t.get('test_s_per_img') or {}).get('median'), 4)} "
         f"({_fmt((t.get('test_s_per_img') or {}).get('p90'), 4)})"),
    ]
    for stage, seconds in (t.get("stages") or {}).items():
        rows.append((f"  stage {stage} (s/img)", _fmt(seconds, 4)))
    for name, ap in (m.get("per_class") or {}).items():
        rows.append((f"  AP50 {name}", _fmt(ap.get("ap50_area"))))
    rows.append(("peak RSS (MiB)", _fmt(record["memory"].get("peak_rss_bytes", 0) / 2**20, 0)))
    for what, value in rows:  # names and paths are data, not rich markup
        table.add_row(escape(what), escape(value))
    return table


@app.command()
def run(
    detector: Detector = typer.Option(Detector.faster, help="Which detector: faster (RPN), fast (selective search), rcnn."),
    dataset: str = typer.Option("synthetic", help="synthetic | synthetic-hard | voc:DIR | coco:ANNOTATIONS.json[:IMAGES_DIR]"),
    backbone: str = typer.Option("tiny", help="tiny | resnet18 | resnet50 | vgg16"),
    weights: Optional[Path] = typer.Option(None, help="Local state-dict file for the backbone (default: random init)."),
    epochs: Optional[int] = typer.Option(None, help="Training epochs (default: the profile's)."),
    device: Device = typer.Option(Device.auto, help="auto picks CUDA when available."),
    amp: bool = typer.Option(False, "--amp", help="Mixed precision in training and test (float16 + loss "
                                                  "scaling on CUDA, bfloat16 on the CPU)."),
    seed: int = typer.Option(0, help="Seed for init, data order and synthetic data."),
    profile: Profile = typer.Option(Profile.cpu, help="cpu: small images and anchors for 2 CPU cores; paper: 600/1000, VGG16."),
    results: Path = typer.Option(Path("results"), help="Folder of runs.jsonl and per-run outputs."),
    set_: list[str] = typer.Option([], "--set", help="Override any config key: --set train.lr=0.01 (see `harness config`)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log data warnings and details."),
    resume: Optional[str] = typer.Option(None, "--resume", metavar="RUN_ID",
                                         help="Continue run RUN_ID (a folder under --results) from its last "
                                              "checkpoint; give the same options as the first time (--epochs may differ)."),
) -> None:
    """Train and test one detector, print a summary and append a run record.

    Several processes: `torchrun --nproc_per_node N -m harness run ...` (Fast and Faster R-CNN; DDP,
    gloo on the CPU, NCCL on GPUs; rank 0 records). See README, Multi-process training.
    """
    from harness.checkpoint import CheckpointError, prepare_resume
    from harness.config import ConfigError, build_config, parse_set_options, to_dict
    from harness.data import DatasetError
    from harness.engine import NonFiniteLossError
    from harness.runner import execute
    from harness.storage import StorageError

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        overrides: dict[str, object] = {"data.dataset": dataset, "model.backbone": backbone, "seed": seed,
                                        "device": device.value}
        if weights is not None:
            if not weights.is_file():
                _fail(f"weights file not found: {weights}")
            overrides["model.weights"] = str(weights)
        if epochs is not None:
            overrides["train.epochs"] = epochs
        if amp:
            overrides.update({"train.amp": True, "test.amp": True})
        overrides.update(parse_set_options(set_))
        cfg = build_config(detector=detector.value, profile=profile.value, overrides=overrides)
        from harness.builder import PENDING

        if cfg.detector in PENDING:
            _fail(PENDING[cfg.detector])
        from harness import data as data_layer

        data_layer.default_splits(cfg.data.dataset)  # bad dataset specs fail here, before any work
        from harness.distributed import from_env
        from harness.runner import check_distributed

        if from_env().active:  # under torchrun: what several processes cannot train fails before any work
            check_distributed(cfg)
        resumed = prepare_resume(results, resume, to_dict(cfg)) if resume is not None else None
    except (ConfigError, DatasetError, CheckpointError) as err:
        _fail(str(err))
    if resumed is not None:
        console.print(f"resuming {escape(resumed.run_id)} after epoch {resumed.epoch}", highlight=False)
    console.print(f"[bold]{cfg.detector}[/] on {cfg.data.dataset} ({cfg.model.backbone}, {cfg.profile} profile, "
                  f"{cfg.train.epochs} epochs)", highlight=False)
    try:
        with _progress() as progress:
            record = execute(cfg, results_dir=results, progress=progress, resume=resumed)
    except KeyboardInterrupt:
        console.print(f"[yellow]interrupted[/]: recorded in {results / 'runs.jsonl'}")
        raise typer.Exit(130)
    except (ConfigError, DatasetError) as err:
        _fail(f"{err} (recorded as failed in {results / 'runs.jsonl'})")
    except NonFiniteLossError as err:
        _fail(f"{err}; the last good checkpoint is kept; recorded as failed", code=1)
    except StorageError as err:
        _fail(f"{err}; nothing partial was kept", code=1)
    if record.get("rank"):  # a torchrun worker: rank 0 prints and records
        return
    out.print(_summary(record))
    console.print(f"record appended to {results / 'runs.jsonl'}")


@app.command()
def datasets(
    dataset: str = typer.Argument(..., help="synthetic | synthetic-hard | voc:DIR | coco:ANNOTATIONS.json[:IMAGES_DIR]"),
    check_images: bool = typer.Option(False, "--check-images",
                                      help="Also decode every image and list the unreadable ones (slow on big sets)."),
) -> None:
    """Describe a dataset: images, boxes, classes and box sizes per split."""
    from harness import data as data_layer
    from harness.data.imageio import require_image_files, unreadable_images

    bad: list[str] = []
    try:
        splits = data_layer.available_splits(dataset)
        for split in splits:
            ds = data_layer.build_dataset(dataset, split, min_size=192, max_size=320)
            out.print(data_layer.format_stats(data_layer.dataset_stats(ds)), markup=False, highlight=False)
            require_image_files(ds)
            if check_images and hasattr(ds, "image_path"):
                bad += unreadable_images([ds.image_path(i) for i in range(len(ds))], dataset=ds.name)
    except data_layer.DatasetError as err:
        _fail(str(err))
    for message in bad:
        console.print(f"[yellow]unreadable:[/] {escape(message)}", highlight=False, soft_wrap=True)
    if bad:
        _fail(f"{len(bad)} unreadable image(s); fix or remove them before training")


@app.command("config")
def show_config(
    detector: Detector = typer.Option(Detector.faster),
    profile: Profile = typer.Option(Profile.cpu),
) -> None:
    """List every config key with its type and default (settable with --set)."""
    from harness.config import build_config, config_keys

    cfg = build_config(detector=detector.value, profile=profile.value)
    table = Table(title=f"config keys ({profile.value} profile)")
    for col in ("key", "type", "default"):
        table.add_column(col)
    for key, tp in config_keys().items():
        value = cfg
        for part in key.split("."):
            value = getattr(value, part)
        table.add_row(key, getattr(tp, "__name__", str(tp)).replace("typing.", ""), repr(value))
    out.print(table)


@app.command()
def bench(
    backbone: Optional[str] = typer.Option(None, help="Backbone for both models (default: the profile's: tiny for cpu, vgg16 for paper)."),
    profile: Profile = typer.Option(Profile.cpu, help="cpu: 192-px images; paper: the papers' 600/1000 px, anchors, proposal counts."),
    device: Device = typer.Option(Device.auto),
    images: int = typer.Option(40, min=1, help="Test images timed per model."),
    iters: int = typer.Option(30, min=1, help="Training iterations timed per model."),
    accuracy_epochs: int = typer.Option(0, min=0, help="Also train both for N epochs and compare mAP50 (0: skip)."),
    accuracy_seeds: int = typer.Option(1, min=1, help="Repeat the accuracy comparison over N seeds (mean and spread)."),
    results: Path = typer.Option(Path("results"), help="bench.jsonl is appended here."),
    set_: list[str] = typer.Option([], "--set", help="Config overrides, as for `harness run`."),
) -> None:
    """Our Faster R-CNN against torchvision's FasterRCNN on the same backbone and settings."""
    from harness.bench import run_bench
    from harness.config import ConfigError, build_config, parse_set_options
    from harness.results import append_record, device_info, git_sha, library_versions, now_iso
    from harness.runner import resolve_device

    try:
        overrides = {**({"model.backbone": backbone} if backbone else {}), **parse_set_options(set_)}
        cfg = build_config(profile=profile.value, overrides=overrides)
        dev = resolve_device(device.value)
    except ConfigError as err:
        _fail(str(err))
    started = now_iso()
    record = run_bench(cfg, device=dev, images=images, iters=iters, accuracy_epochs=accuracy_epochs,
                       accuracy_seeds=accuracy_seeds,
                       progress=lambda msg: console.print(f"bench: {msg}"))
    record.update({"started": started, "finished": now_iso(), "git_sha": git_sha(),
                   "versions": library_versions(), "device": device_info(dev)})
    append_record(results / "bench.jsonl", record)
    table = Table(title=f"harness bench ({record['device']['type']}: {record['device']['name']}, "
                        f"{cfg.model.backbone}, {'pretrained' if cfg.model.weights else 'random init'}, {record['image_size'][0]}x{record['image_size'][1]} images)")
    for col in ("figure", "value", "target"):
        table.add_column(col)
    for name, value in record["ratios"].items():
        base = name.replace("_roi_align", "").removesuffix("_svd")  # same target, shown beside each variant
        table.add_row(name, f"{value:.2f}", record["targets"].get(base, ""))
    for name, s in record["speed"].items():
        table.add_row(f"{name} s/img (inference)", f"{s['infer_s_per_img']:.4f}", "")
        if "train_s_per_iter" in s:
            table.add_row(f"{name} s/iter (training)", f"{s['train_s_per_iter']:.4f}", "")
    for stage, flops in record["flops_per_image"].items():
        table.add_row(f"GFLOPs/img {stage}", f"{flops / 1e9:.3f}", "")
    for stage in ("head", "total"):
        if stage in record.get("flops_per_image_svd", {}):
            table.add_row(f"GFLOPs/img {stage}, SVD head {record['svd_ranks']}",
                          f"{record['flops_per_image_svd'][stage] / 1e9:.3f}", "")
    if "accuracy" in record:
        acc = record["accuracy"]
        spread = acc.get("map50_area_difference_points_std")
        seeds = f" (mean ± sd of {len(acc['seeds'])} seeds)" if spread is not None else ""
        table.add_row(f"mAP50 ours - torchvision (points){seeds}",
                      f"{acc['map50_area_difference_points']:+.1f}" + (f" ± {spread:.1f}" if spread is not None else ""),
                      "within 1")
    out.print(table)
    console.print(f"appended to {results / 'bench.jsonl'}")


@app.command()
def sweep(
    detector: Detector = typer.Option(Detector.faster, help="Detector for every run of the grid."),
    grid: list[str] = typer.Option(..., "--grid", help="key=v1,v2 (semicolons for tuple values: "
                                   "model.anchor_sizes='32,64;64,128'); repeat for a product."),
    seeds: int = typer.Option(1, min=1, help="Seeds 0..N-1 per grid point (error bars in the report)."),
    profile: Profile = typer.Option(Profile.cpu),
    results: Path = typer.Option(Path("results")),
    set_: list[str] = typer.Option([], "--set", help="Overrides shared by every run."),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the runs without running them."),
) -> None:
    """Run a grid of configs x seeds; resumable: points with an ok record are skipped."""
    from harness.config import ConfigError, parse_set_options
    from harness.runner import execute
    from harness.sweep import expand, finished_keys, parse_grid, run_sweep

    try:
        points = expand(detector.value, parse_grid(grid), seeds=seeds, base=parse_set_options(set_),
                        profile=profile.value)
    except ConfigError as err:
        _fail(str(err))
    if dry_run:
        done = finished_keys(results)
        for point in points:
            state = "done" if point.key in done else "todo"
            typer.echo(f"{state}  {point.key}  " + " ".join(f"{k}={v}" for k, v in point.overrides.items()))
        return

    def run_one(cfg):
        with _progress() as progress:
            return execute(cfg, results_dir=results, progress=progress)

    try:
        counts = run_sweep(points, results_dir=results, execute=run_one,
                           say=lambda msg: console.print(msg, markup=False, highlight=False))
    except KeyboardInterrupt:
        console.print("[yellow]sweep interrupted[/]: run it again to resume")
        raise typer.Exit(130)
    console.print(f"sweep: {counts['ran']} ran, {counts['skipped']} skipped, {counts['failed']} failed")
    if counts["failed"]:
        raise typer.Exit(1)


class Scale(str, Enum):
    cpu = "cpu"
    paper = "paper"


@app.command()
def reproduce(
    table: Optional[str] = typer.Argument(None, help="Preset id (see --list)."),
    list_: bool = typer.Option(False, "--list", help="List the presets."),
    scale: Scale = typer.Option(Scale.cpu, help="cpu: reduced, runs on 2 CPU cores; paper: the papers' settings."),
    dataset: Optional[str] = typer.Option(None, help="Dataset for every run (default: synthetic)."),
    weights: Optional[Path] = typer.Option(None, help="Backbone weights file (paper scale needs ImageNet weights)."),
    seeds: int = typer.Option(1, min=1, help="Seeds per row."),
    results: Path = typer.Option(Path("results")),
    dry_run: bool = typer.Option(False, "--dry-run", help="List the runs and their configs; run nothing."),
) -> None:
    """Reproduce a paper's table (or an ablation) as a set of recorded runs; resumable."""
    from harness.config import ConfigError, to_dict
    from harness.presets import BY_ID, PAPER_NEEDS, PRESETS, resolve
    from harness.results import append_record, device_info, git_sha, library_versions, now_iso
    from harness.runner import execute, resolve_device
    from harness.sweep import SweepPoint, run_sweep

    if list_ or table is None:
        t = Table(title="presets (harness reproduce ID)")
        for col in ("id", "paper", "table", "what", "runs", "cpu scale (min)"):
            t.add_column(col, no_wrap=col == "id")
        for p in PRESETS:
            t.add_row(p.id, p.paper, p.table, p.title, str(len(p.rows)), f"~{p.cpu_minutes():.0f}")
        out.print(t)
        if table is None and not list_:
            raise typer.Exit(2)
        return
    if table not in BY_ID:
        _fail(f"unknown preset {table!r}; `harness reproduce --list` shows them")
    preset = BY_ID[table]
    extra: dict[str, object] = {}
    if dataset:
        extra["data.dataset"] = dataset
    if weights:
        extra["model.weights"] = str(weights)
    try:
        runs = resolve(preset, scale=scale.value, seeds=seeds, extra=extra)
    except ConfigError as err:
        _fail(str(err))
    console.print(f"{preset.id}: {preset.paper} {preset.table}: {preset.title}", highlight=False)
    if scale == Scale.paper:
        console.print(f"paper scale needs {PAPER_NEEDS}", highlight=False)
    else:
        console.print(f"cpu scale: expected about {preset.cpu_minutes(seeds):.0f} min on 2 CPU cores", highlight=False)
    if preset.note:
        console.print(f"note: {preset.note}", highlight=False)
    if dry_run:
        import json

        for row, point in runs:
            typer.echo(json.dumps({"row": row.label, "detector": row.detector, "overrides": point.overrides,
                                   "config": to_dict(point.config)}, default=str))
        return
    labels = {point.key: row.label for row, point in runs}

    def run_one(cfg):
        with _progress() as progress:
            tags = {"preset": preset.id, "preset_row": labels[SweepPoint({}, cfg).key], "scale": scale.value}
            return execute(cfg, results_dir=results, progress=progress, tags=tags)

    started, clock = now_iso(), time.perf_counter()
    try:
        counts = run_sweep([p for _, p in runs], results_dir=results, execute=run_one,
                           say=lambda msg: console.print(msg, markup=False, highlight=False))
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]: run the same command again to resume")
        raise typer.Exit(130)
    minutes = (time.perf_counter() - clock) / 60
    stated = preset.cpu_minutes(seeds) if scale == Scale.cpu else None
    # One record per invocation: the preset's wall time against the time it states. Only an
    # invocation that ran every row (none skipped, none failed) says whether the preset fits.
    append_record(results / "reproduce.jsonl", {
        "kind": "reproduce", "preset": preset.id, "scale": scale.value, "seeds": seeds, "runs": len(runs),
        **counts, "complete": counts["ran"] == len(runs) and not counts["failed"],
        "wall_minutes": minutes, "stated_minutes": stated,
        # an invocation that skipped or failed rows did not time the whole preset
        "within_stated": None if stated is None or counts["ran"] != len(runs) or counts["failed"]
        else minutes <= stated,
        "started": started, "finished": now_iso(), "git_sha": git_sha(), "versions": library_versions(),
        "device": device_info(resolve_device("auto")), "dataset": dataset or "synthetic"})
    console.print(f"{preset.id}: {counts['ran']} ran, {counts['skipped']} skipped, {counts['failed']} failed "
                  f"in {minutes:.1f} min" + (f" (stated ~{stated:.0f} min)" if stated else "")
                  + "; `harness report` shows our table beside the paper's")
    if counts["failed"]:
        raise typer.Exit(1)


def _register_report() -> None:
    from harness.report.command import report_command

    app.command("report", help="Write the HTML (or Markdown) report of every recorded run.")(report_command)


_register_report()


def _register_proposals() -> None:
    from harness.proposal_commands import bench_proposals_command, proposals_command

    app.command("proposals")(proposals_command)
    app.command("bench-proposals")(bench_proposals_command)


_register_proposals()


def _register_rcnn_bench() -> None:
    from harness.bench_rcnn import bench_rcnn_command

    app.command("bench-rcnn")(bench_rcnn_command)


_register_rcnn_bench()


def _register_scaling_bench() -> None:
    from harness.bench_scaling import bench_scaling_command

    app.command("bench-scaling")(bench_scaling_command)


_register_scaling_bench()

if __name__ == "__main__":
    app()
