"""The four benchmark commands on one scaffold: build the config, measure, add the record envelope,
append to ``bench.jsonl``, print a table. The measuring lives in :mod:`harness.bench`."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import torch
import typer
from rich.markup import escape
from rich.table import Table

from harness.bench.scaling import IMAGE_SIZES, PROPOSAL_COUNTS, RCNN_IMAGES
from harness.cli.ui import Device, Profile, console, fail, out, progress_bars, table
from harness.config import ConfigError, RunConfig, build_config, parse_set_options


def bench_command(
    results: Path,
    build: Callable[[], tuple[Any, torch.device]],
    measure: Callable[[Any, torch.device], dict[str, Any]],
    show: Callable[[dict[str, Any]], None],
) -> dict[str, Any]:
    """The scaffold: ``build()`` (a :class:`ConfigError` is exit 2) → ``measure`` → envelope → append → ``show``."""
    from harness.run.results import append_record, now_iso, record_envelope

    try:
        setup, device = build()
    except ConfigError as err:
        fail(str(err))
    started = now_iso()
    record = measure(setup, device)
    record.update(record_envelope(started, device))
    append_record(results / "bench.jsonl", record)
    show(record)
    console.print(f"appended to {escape(str(results / 'bench.jsonl'))}", highlight=False)
    return record


def _config(detector: str = "faster", profile: str = "cpu", **overrides: Any) -> Callable[[], tuple[RunConfig, torch.device]]:
    """A ``build`` for the scaffold: the run config with the options given and ``--set``, and its device."""
    from harness.run.device import resolve_device

    def build() -> tuple[RunConfig, torch.device]:
        sets = overrides.pop("_sets", [])
        given = {k.replace("__", "."): v for k, v in overrides.items() if v is not None}
        # the benches build their networks from random init (or --weights) whatever the profile's model.init
        # says (speed does not depend on the weights): the recorded config says so
        cfg = build_config(detector=detector, profile=profile,
                           overrides={"model.init": "random", **given, **parse_set_options(sets)})
        return cfg, resolve_device(cfg.device)

    return build


def _where(record: dict[str, Any]) -> str:
    d = record["device"]
    return f"{d['type']}: {d['name']}, {d['threads']} threads"


def bench(
    backbone: Optional[str] = typer.Option(None, help="Backbone for both models (default: the profile's: tiny for cpu, vgg16 for paper)."),
    profile: Profile = typer.Option("cpu", help="cpu: 192-px images; paper: the papers' 600/1000 px, anchors, proposal counts."),
    device: Optional[Device] = typer.Option(None, help="auto (default) picks CUDA when available."),
    images: int = typer.Option(40, min=1, help="Test images timed per model."),
    iters: int = typer.Option(30, min=1, help="Training iterations timed per model."),
    accuracy_epochs: int = typer.Option(0, min=0, help="Also train both for N epochs and compare mAP50 (0: skip)."),
    accuracy_seeds: int = typer.Option(1, min=1, help="Repeat the accuracy comparison over N seeds (mean and spread)."),
    results: Path = typer.Option(Path("results"), help="bench.jsonl is appended here."),
    set_: list[str] = typer.Option([], "--set", help="Config overrides, as for `harness run`."),
) -> None:
    """Our Faster R-CNN against torchvision's FasterRCNN on the same backbone and settings."""
    from harness.bench.faster import run_bench

    build = _config(profile=profile.value, model__backbone=backbone, device=device.value if device else None,
                    _sets=set_)
    state: dict[str, RunConfig] = {}

    def measure(cfg: RunConfig, dev: torch.device) -> dict[str, Any]:
        state["cfg"] = cfg
        return run_bench(cfg, device=dev, images=images, iters=iters, accuracy_epochs=accuracy_epochs,
                         accuracy_seeds=accuracy_seeds, progress=lambda msg: console.print(f"bench: {msg}"))

    def show(record: dict[str, Any]) -> None:
        cfg = state["cfg"]
        t = Table(title=f"harness bench ({record['device']['type']}: {record['device']['name']}, "
                        f"{cfg.model.backbone}, {'pretrained' if cfg.model.weights else 'random init'}, "
                        f"{record['image_size'][0]}x{record['image_size'][1]} images)")
        for col in ("figure", "value", "target"):
            t.add_column(col)
        for name, value in record["ratios"].items():
            base = name.replace("_roi_align", "").removesuffix("_svd")  # same target, shown beside each variant
            t.add_row(name, f"{value:.2f}", record["targets"].get(base, ""))
        for name, s in record["speed"].items():
            t.add_row(f"{name} s/img (inference)", f"{s['infer_s_per_img']:.4f}", "")
            if "train_s_per_iter" in s:
                t.add_row(f"{name} s/iter (training)", f"{s['train_s_per_iter']:.4f}", "")
        for stage, flops in record["flops_per_image"].items():
            t.add_row(f"GFLOPs/img {stage}", f"{flops / 1e9:.3f}", "")
        for stage in ("head", "total"):
            if stage in record.get("flops_per_image_svd", {}):
                t.add_row(f"GFLOPs/img {stage}, SVD head {record['svd_ranks']}",
                          f"{record['flops_per_image_svd'][stage] / 1e9:.3f}", "")
        if "accuracy" in record:
            acc = record["accuracy"]
            spread = acc.get("map50_area_difference_points_std")
            seeds = f" (mean ± sd of {len(acc['seeds'])} seeds)" if spread is not None else ""
            t.add_row(f"mAP50 ours - torchvision (points){seeds}",
                      f"{acc['map50_area_difference_points']:+.1f}" + (f" ± {spread:.1f}" if spread is not None else ""),
                      "within 1")
        out.print(t)

    bench_command(results, build, measure, show)


def bench_rcnn(
    backbone: Optional[str] = typer.Option(None, help="Backbone of the region CNN (default: the profile's, tiny)."),
    device: Optional[Device] = typer.Option(None, help="auto (default) picks CUDA when available."),
    crops: int = typer.Option(1024, min=1, help="Regions per timed pass."),
    repeats: int = typer.Option(7, min=1, help="Timed passes per path (medians are reported)."),
    profile: Profile = typer.Option("cpu", help="Profile of the R-CNN settings (crop size, context)."),
    results: Path = typer.Option(Path("results"), help="bench.jsonl is appended here."),
    set_: list[str] = typer.Option([], "--set", help="Config overrides as for `harness run` (rcnn.crop_size=112)."),
) -> dict[str, Any]:
    """R-CNN's CNN-stage throughput (warp + CNN) as a fraction of the backbone's raw batched throughput."""
    from harness.bench.rcnn import TARGET, run_rcnn_bench

    def show(record: dict[str, Any]) -> None:
        out.print(table(f"harness bench-rcnn ({_where(record)}, {record['backbone']}, {record['crop_size']}px crops, "
                        f"batch {record['batch_size']})", ("figure", "value", "target"), [
            ("backbone raw, crops/s", f"{record['raw_crops_per_s']:.0f}", ""),
            ("R-CNN warp + CNN, crops/s", f"{record['rcnn_crops_per_s']:.0f}", ""),
            ("fraction", f"{record['fraction']:.3f}", f">= {TARGET}"),
        ]))

    return bench_command(
        results,
        _config("rcnn", profile.value, model__backbone=backbone, device=device.value if device else None, _sets=set_),
        lambda cfg, dev: run_rcnn_bench(cfg, device=dev, crops=crops, repeats=repeats),
        show,
    )


def _ints(text: str, what: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if any(v < 1 for v in values) or (text.strip() and not values):
        raise typer.BadParameter(f"{what}: comma-separated positive integers, got {text!r}")
    return values


def bench_scaling(
    backbone: Optional[str] = typer.Option(None, help="Backbone of every detector (default: the profile's, tiny)."),
    device: Optional[Device] = typer.Option(None, help="auto (default) picks CUDA when available."),
    proposals: str = typer.Option(",".join(map(str, PROPOSAL_COUNTS)),
                                  help="Proposal counts for the Fast R-CNN / R-CNN test-time curve ('' skips it)."),
    sizes: str = typer.Option(",".join(map(str, IMAGE_SIZES)), help="Shorter image sides for the Faster R-CNN time curve ('' skips it)."),
    rcnn_images: str = typer.Option(",".join(map(str, RCNN_IMAGES)), help="Training-set sizes for R-CNN's disk and RSS curve, one whole run "
                                                 "each ('' skips it)."),
    rcnn_epochs: int = typer.Option(1, min=1, help="Fine-tuning epochs of each R-CNN run of the disk curve."),
    images: int = typer.Option(3, min=1, help="Test images per point of the time curves."),
    repeats: int = typer.Option(2, min=1, help="Passes over those images per point (medians are reported)."),
    profile: Profile = typer.Option("cpu", help="Profile the curves start from."),
    results: Path = typer.Option(Path("results"), help="bench.jsonl is appended here."),
    set_: list[str] = typer.Option([], "--set", help="Config overrides as for `harness run`."),
) -> None:
    """Scaling curves: test time vs proposals (Fast R-CNN, R-CNN), Faster R-CNN time vs image size,
    R-CNN feature-cache disk and peak RSS vs training images."""
    from harness.bench.scaling import run_scaling_bench

    counts, size_list = _ints(proposals, "--proposals"), _ints(sizes, "--sizes")
    rcnn_list = _ints(rcnn_images, "--rcnn-images")

    def measure(cfg: RunConfig, dev: torch.device) -> dict[str, Any]:
        return run_scaling_bench(cfg, device=dev, counts=counts, sizes=size_list, rcnn_images=rcnn_list,
                                 rcnn_epochs=rcnn_epochs, images=images, repeats=repeats,
                                 say=lambda msg: console.print(f"bench-scaling: {msg}", highlight=False), sets=set_)

    def show(record: dict[str, Any]) -> None:
        where = f"{_where(record)}, {record['init']} init"
        for detector, curve in record.get("test_time_vs_proposals", {}).items():
            out.print(table(f"{detector}: network s/img vs proposals ({where})", ("proposals", "s/img"),
                            [(str(p["proposals"]), f"{p['s_per_img']:.4f}") for p in curve]))
        if record.get("rcnn_over_fast"):
            out.print(table(f"R-CNN / Fast R-CNN: measured time ratio vs FLOP ratio ({where})",
                            ("proposals", "time ratio", "FLOP ratio"),
                            [(str(p["proposals"]), f"{p['time_ratio']:.1f}x", f"{p['flop_ratio']:.1f}x")
                             for p in record["rcnn_over_fast"]]))
        if "faster_time_vs_image_size" in record:
            out.print(table(f"faster: test s/img vs image size ({where})", ("shorter side", "image", "s/img"),
                            [(str(p["min_size"]), "x".join(map(str, p["image_size"])), f"{p['s_per_img']:.4f}")
                             for p in record["faster_time_vs_image_size"]]))
        if "rcnn_disk_vs_images" in record:
            out.print(table(f"rcnn: feature cache and peak RSS vs training images ({where})",
                            ("train images", "feature cache (MB)", "peak RSS (MiB)"),
                            [(str(p["train_images"]), f"{p['feature_cache_bytes'] / 1e6:.1f}",
                              f"{p['peak_rss_bytes'] / 2**20:.0f}") for p in record["rcnn_disk_vs_images"]]))
            g = record["rcnn_growth"]
            console.print(f"{g['images_ratio']:.0f}x the images: disk x{g['disk_ratio']:.2f}, "
                          f"peak RSS x{g['peak_rss_ratio']:.2f}", highlight=False)

    bench_command(results, _config(profile=profile.value, model__backbone=backbone,
                                   device=device.value if device else None, _sets=set_), measure, show)


def bench_proposals(
    dataset: str = typer.Option(..., help="synthetic | voc:DIR | coco:ANNOTATIONS.json[,TEST.json][:IMAGES_DIR] | yolo:DIR"),
    split: Optional[list[str]] = typer.Option(None, "--split", help="Split to cover (repeatable); default: the run's train and test splits."),
    workers: int = typer.Option(2, min=2, help="Processes of the parallel pass (compared against 1)."),
    limit: Optional[int] = typer.Option(None, min=1, help="Only the first N images of each split."),
    repeats: int = typer.Option(2, min=1, help="Runs of each pass; the best throughput counts."),
    profile: Profile = typer.Option("cpu"),
    results: Path = typer.Option(Path("results"), help="bench.jsonl is appended here."),
    set_: list[str] = typer.Option([], "--set", help="Override proposals.* keys."),
) -> None:
    """Benchmark the proposal stage: N workers vs 1 (target >= 1.8x), cache hit vs recompute (>= 100x)."""
    from harness.bench.proposals import bench_proposals as measure_proposals
    from harness.cli.proposals import proposal_setup
    from harness.proposals.stage import selective_search_params

    def measure(setup: tuple, dev: torch.device) -> dict[str, Any]:
        cfg, sets = setup
        with progress_bars() as progress:
            return measure_proposals(sets, selective_search_params(cfg.proposals), workers=workers, limit=limit,
                                     repeats=repeats, progress=progress)

    def show(record: dict[str, Any]) -> None:
        rows = [(f"{n}: images/s (best of {len(runs)})", f"{max(p['images_per_s'] for p in runs):.2f}", "")
                for n, runs in record["passes"].items()]
        rows += [
            (f"speed-up {workers} workers / 1", f"{record['ratios']['parallel_speedup']:.2f}x", ">= 1.8x"),
            ("selective search s/img (median)", f"{record['search_s_per_image_median']:.4f}", ""),
            ("cache hit s/img (median)", f"{record['cache_hit_s_per_image_median']:.6f}", ""),
            ("hit vs recompute", f"{record['ratios']['hit_vs_recompute']:.0f}x", ">= 100x"),
            ("proposals/img", f"{record['proposals_per_image']:.0f}", ""),
        ]
        out.print(table(f"bench-proposals: {record['images']} images, {record['device']['name']}",
                        ("figure", "value", "target"), rows))

    bench_command(results, lambda: (proposal_setup(dataset, split, profile.value, {}, set_), torch.device("cpu")),
                  measure, show)
