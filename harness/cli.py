"""``harness``: the command line. Thin commands: parse, build config, call one function."""
from __future__ import annotations

import logging
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
    console.print(f"[bold red]error:[/] {message}", highlight=False)
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
    dataset: str = typer.Option("synthetic", help="synthetic | voc:DIR | coco:ANNOTATIONS.json[:IMAGES_DIR]"),
    backbone: str = typer.Option("tiny", help="tiny | resnet18 | resnet50 | vgg16"),
    weights: Optional[Path] = typer.Option(None, help="Local state-dict file for the backbone (default: random init)."),
    epochs: Optional[int] = typer.Option(None, help="Training epochs (default: the profile's)."),
    device: Device = typer.Option(Device.auto, help="auto picks CUDA when available."),
    seed: int = typer.Option(0, help="Seed for init, data order and synthetic data."),
    profile: Profile = typer.Option(Profile.cpu, help="cpu: small images and anchors for 2 CPU cores; paper: 600/1000, VGG16."),
    results: Path = typer.Option(Path("results"), help="Folder of runs.jsonl and per-run outputs."),
    set_: list[str] = typer.Option([], "--set", help="Override any config key: --set train.lr=0.01 (see `harness config`)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log data warnings and details."),
) -> None:
    """Train and test one detector, print a summary and append a run record."""
    from harness.config import ConfigError, build_config, parse_set_options
    from harness.data import DatasetError
    from harness.engine import NonFiniteLossError
    from harness.runner import execute

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
        overrides.update(parse_set_options(set_))
        cfg = build_config(detector=detector.value, profile=profile.value, overrides=overrides)
        from harness.builder import PENDING

        if cfg.detector in PENDING:
            _fail(PENDING[cfg.detector])
        from harness import data as data_layer

        data_layer.default_splits(cfg.data.dataset)  # bad dataset specs fail here, before any work
    except (ConfigError, DatasetError) as err:
        _fail(str(err))
    console.print(f"[bold]{cfg.detector}[/] on {cfg.data.dataset} ({cfg.model.backbone}, {cfg.profile} profile, "
                  f"{cfg.train.epochs} epochs)", highlight=False)
    try:
        with _progress() as progress:
            record = execute(cfg, results_dir=results, progress=progress)
    except KeyboardInterrupt:
        console.print(f"[yellow]interrupted[/]: recorded in {results / 'runs.jsonl'}")
        raise typer.Exit(130)
    except (ConfigError, DatasetError) as err:
        _fail(f"{err} (recorded as failed in {results / 'runs.jsonl'})")
    except NonFiniteLossError as err:
        _fail(f"{err}; the last good checkpoint is kept; recorded as failed", code=1)
    out.print(_summary(record))
    console.print(f"record appended to {results / 'runs.jsonl'}")


@app.command()
def datasets(dataset: str = typer.Argument(..., help="synthetic | voc:DIR | coco:ANNOTATIONS.json[:IMAGES_DIR]")) -> None:
    """Describe a dataset: images, boxes, classes and box sizes per split."""
    from harness import data as data_layer

    try:
        splits = data_layer.available_splits(dataset)
        for split in splits:
            ds = data_layer.build_dataset(dataset, split, min_size=192, max_size=320)
            out.print(data_layer.format_stats(data_layer.dataset_stats(ds)), markup=False, highlight=False)
    except data_layer.DatasetError as err:
        _fail(str(err))


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


def _register_report() -> None:
    from harness.report.command import report_command

    app.command("report", help="Write the HTML (or Markdown) report of every recorded run.")(report_command)


_register_report()

if __name__ == "__main__":
    app()
