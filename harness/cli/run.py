"""``harness run``, ``harness datasets`` and ``harness config``: train and test one detector, describe data, list keys."""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import typer
from rich.markup import escape
from rich.table import Table

from harness.cli.ui import (
    Detector,
    Device,
    Profile,
    console,
    fail,
    fmt,
    out,
    progress_bars,
)
from harness.run.init_record import init_label


def summary(record: dict) -> Table:
    """The table ``harness run`` prints at the end: what ran, on what, and its main figures."""
    m, t = record.get("metrics", {}), record.get("timing", {})
    table = Table(title=f"run {record['run_id']}  ({record['status']})", show_header=True)
    table.add_column("what")
    table.add_column("value", justify="right")
    rows = [
        ("detector / backbone / init", f"{record['detector']} / {record['backbone']} / {init_label(record['init'])}"),
        ("dataset", record["dataset"]),
        ("device", f"{record['device']['type']}: {record['device']['name']} ({record['device']['threads']} threads)"),
        ("VOC mAP50 (07 11-point)", fmt(m.get("map50_voc07"))),
        ("VOC mAP50 (area)", fmt(m.get("map50_area"))),
        ("COCO AP / AP50", f"{fmt(m.get('coco_ap'))} / {fmt(m.get('coco_ap50'))}"),
        ("train time (s)", fmt(t.get("train_s"), 1)),
        ("test s/img median (p90)", f"{fmt((t.get('test_s_per_img') or {}).get('median'), 4)} "
         f"({fmt((t.get('test_s_per_img') or {}).get('p90'), 4)})"),
    ]
    for stage, seconds in (t.get("stages") or {}).items():
        rows.append((f"  stage {stage} (s/img)", fmt(seconds, 4)))
    for name, ap in (m.get("per_class") or {}).items():
        rows.append((f"  AP50 {name}", fmt(ap.get("ap50_area"))))
    rows.append(("peak RSS (MiB)", fmt(record["memory"].get("peak_rss_bytes", 0) / 2**20, 0)))
    for what, value in rows:  # names and paths are data, not rich markup
        table.add_row(escape(what), escape(value))
    return table


def given(**options: object) -> dict[str, object]:
    """Config overrides of the options the user gave (not None): a default never beats a profile or preset."""
    return {key: value for key, value in options.items() if value is not None}


def run(
    detector: Detector = typer.Option("faster", help="Which detector: faster (RPN), fast (selective search), rcnn."),
    dataset: Optional[str] = typer.Option(None, help="synthetic (default) | synthetic-hard | voc:DIR | "
                                                     "coco:ANNOTATIONS.json[,TEST.json][:IMAGES_DIR] | yolo:DIR"),
    backbone: Optional[str] = typer.Option(None, help="tiny | resnet18 | resnet50 | vgg16 (default: the profile's: "
                                                      "tiny for cpu, vgg16 for paper)."),
    weights: Optional[Path] = typer.Option(
        None, help="Local state-dict file for the backbone (default: the cpu profile starts tiny / resnet18 from the "
                   "built-in pre-training, trained once and cached, about 10 min; --set model.init=random for random "
                   "init; the paper profile from random init)."),
    epochs: Optional[int] = typer.Option(None, help="Training epochs (default: the profile's)."),
    device: Optional[Device] = typer.Option(None, help="auto (default) picks CUDA when available."),
    amp: bool = typer.Option(False, "--amp", help="Mixed precision in training and test (float16 + loss "
                                                  "scaling on CUDA, bfloat16 on the CPU)."),
    seed: Optional[int] = typer.Option(None, help="Seed for init, data order and synthetic data (default 0)."),
    profile: Profile = typer.Option("cpu", help="cpu: small images and anchors for 2 CPU cores; paper: 600/1000, VGG16."),
    results: Path = typer.Option(Path("results"), help="Folder of runs.jsonl and per-run outputs."),
    set_: list[str] = typer.Option([], "--set", help="Override any config key: --set train.lr=0.01 (see `harness config`)."),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Log data warnings and details."),
    resume: Optional[str] = typer.Option(None, "--resume", metavar="RUN_ID",
                                         help="Continue run RUN_ID (a folder under --results) from its last "
                                              "checkpoint; give the same options as the first time (--epochs may differ)."),
    tensorboard: Optional[Path] = typer.Option(None, "--tensorboard", metavar="DIR",
                                               help="Also write the training log (losses, lr, images/s) as "
                                                    "TensorBoard scalars to DIR/<run_id> (needs the optional "
                                                    "extra: pip install 'rcnn-harness[tensorboard]')."),
) -> None:
    """Train and test one detector, print a summary and append a run record.

    At the cpu profile the backbone (tiny or resnet18) starts from the built-in
    pre-training (`harness pretrain`'s default recipe): the first run trains it
    once (tiny: about 10 min on 2 cores) and caches it under cache/pretrained/;
    --set model.init=random starts from random init instead.

    Several processes: `torchrun --nproc_per_node N -m harness run ...` (Fast
    and Faster R-CNN; DDP, gloo on the CPU, NCCL on GPUs; rank 0 records). See
    README, Multi-process training.
    """
    from harness import data as data_layer
    from harness.config import ConfigError, build_config, parse_set_options, to_dict
    from harness.run.checkpoint import CheckpointError, prepare_resume
    from harness.run.runner import check_run, execute
    from harness.run.storage import StorageError
    from harness.train.engine import NonFiniteLossError
    from harness.train.train_log import tensorboard_writer_class

    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if weights is not None and not weights.is_file():
        fail(f"weights file not found: {weights}")
    try:
        overrides = given(**{"data.dataset": dataset, "model.backbone": backbone, "seed": seed,
                             "device": device.value if device else None, "train.epochs": epochs,
                             "model.weights": str(weights) if weights else None})
        if amp:
            overrides.update({"train.amp": True, "test.amp": True})
        overrides.update(parse_set_options(set_))
        cfg = build_config(detector=detector.value, profile=profile.value, overrides=overrides)
        data_layer.default_splits(cfg.data.dataset, **data_layer.dataset_options(cfg.data))  # bad specs fail here
        check_run(cfg, resuming=resume is not None)  # what this detector cannot do fails before any work
        resumed = prepare_resume(results, resume, to_dict(cfg)) if resume is not None else None
        if tensorboard is not None:
            tensorboard_writer_class()  # a missing package fails here, before any work
    except (ConfigError, data_layer.DatasetError, CheckpointError) as err:
        fail(str(err))
    if resumed is not None:
        console.print(f"resuming {escape(resumed.run_id)} after epoch {resumed.epoch}", highlight=False)
    console.print(f"[bold]{cfg.detector}[/] on {escape(cfg.data.dataset)} ({cfg.model.backbone}, {cfg.profile} profile, "
                  f"{cfg.train.epochs} epochs)", highlight=False)
    try:
        with progress_bars() as progress:
            record = execute(cfg, results_dir=results, progress=progress, resume=resumed, tensorboard=tensorboard)
    except KeyboardInterrupt:
        console.print(f"[yellow]interrupted[/]: recorded in {escape(str(results / 'runs.jsonl'))}")
        raise typer.Exit(130)
    except (ConfigError, data_layer.DatasetError) as err:
        fail(f"{err} (recorded as failed in {results / 'runs.jsonl'})")
    except NonFiniteLossError as err:
        fail(f"{err}; the last good checkpoint is kept; recorded as failed", code=1)
    except StorageError as err:
        fail(f"{err}; nothing partial was kept", code=1)
    if record.get("rank"):  # a torchrun worker: rank 0 prints and records
        return
    out.print(summary(record))
    console.print(f"record appended to {escape(str(results / 'runs.jsonl'))}")


def datasets(
    dataset: str = typer.Argument(..., help="synthetic | synthetic-hard | voc:DIR | "
                                            "coco:ANNOTATIONS.json[,TEST.json][:IMAGES_DIR] | yolo:DIR | yolo:data.yaml"),
    check_images: bool = typer.Option(False, "--check-images",
                                      help="Also decode every image and list the unreadable ones (slow on big sets)."),
    set_: list[str] = typer.Option([], "--set", help="data.split_seed=N, data.class_names=a,b (as for `harness run`)."),
) -> None:
    """Describe a dataset: its layout, how it is split, and images, boxes, classes and box sizes per split."""
    from harness import data as data_layer
    from harness.config import ConfigError, build_config, parse_set_options
    from harness.data.imageio import require_image_files, unreadable_images

    bad: list[str] = []
    try:
        options = data_layer.dataset_options(build_config(overrides=parse_set_options(set_)).data)
        splits = data_layer.available_splits(dataset, **options)
        for split in splits:
            ds = data_layer.build_dataset(dataset, split, min_size=192, max_size=320, **options)
            out.print(data_layer.format_stats(data_layer.dataset_stats(ds)), markup=False, highlight=False)
            require_image_files(ds)
            if check_images and hasattr(ds, "image_path"):
                bad += unreadable_images([ds.image_path(i) for i in range(len(ds))], dataset=ds.name)
    except (data_layer.DatasetError, ConfigError) as err:
        fail(str(err))
    for message in bad:
        console.print(f"[yellow]unreadable:[/] {escape(message)}", highlight=False, soft_wrap=True)
    if bad:
        fail(f"{len(bad)} unreadable image(s); fix or remove them before training")


def show_config(
    detector: Detector = typer.Option("faster"),
    profile: Profile = typer.Option("cpu"),
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
