"""``harness bench-rcnn``: is R-CNN's CNN stage as fast as the backbone itself?

R-CNN's test cost is one CNN forward per proposal (section 2.2). Its CNN stage
here is crop-and-warp (``roi_align`` of the normalised image) followed by the
backbone on batches of crops; the figure of merit is its throughput in crops/s
as a fraction of the backbone's raw batched throughput, i.e. the same body +
head on a ready tensor of crops of the same size, no warping. Target: >= 0.9
(warping must not be the bottleneck).

Both paths are timed interleaved (raw, R-CNN, raw, ...) after warm-up, on the
same model (eval mode), crop size and batch, so machine noise hits both alike;
medians are reported. Regions are random boxes in real dataset images: the cost
of ``roi_align`` depends on the output size only, not on where the boxes are.
"""
from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

import torch
import typer
from rich.console import Console
from rich.table import Table

from detectors.rcnn import RCNN
from harness.builder import build_model
from harness.config import RunConfig, to_dict
from harness.timing import timed

TARGET = 0.9


def random_boxes(n: int, height: int, width: int, generator: torch.Generator) -> torch.Tensor:
    """``[n, 4]`` boxes inside an ``height x width`` image, sides 10..100 % of the image."""
    wh = torch.rand(n, 2, generator=generator) * 0.9 + 0.1
    xy = torch.rand(n, 2, generator=generator) * (1 - wh)
    size = torch.tensor([width, height], dtype=torch.float32)
    return torch.cat((xy * size, (xy + wh) * size), dim=1)


@torch.no_grad()
def measure(model: RCNN, image: torch.Tensor, *, crops: int, repeats: int, device: torch.device) -> dict[str, Any]:
    """Median seconds of ``crops`` regions through (a) warp + CNN and (b) the CNN on ready crops.

    Args:
        image: ``float32 [3, H, W]`` in [0, 1].
        crops: regions per timed pass (split into the model's ``batch_size`` chunks, as at test time).
    """
    model.to(device).eval()
    layers = model.test_layers()
    boxes = random_boxes(crops, int(image.shape[1]), int(image.shape[2]), torch.Generator().manual_seed(0))
    image, boxes = image.to(device), boxes.to(device)
    s = model.crop_size
    ready = torch.randn(crops, 3, s, s, generator=torch.Generator().manual_seed(1)).to(device)

    def rcnn_stage() -> None:  # what R-CNN's test path runs: normalise, warp in chunks, CNN
        batch, _ = model.normalize([image])
        for _ in model.region_features(batch, [boxes], layers):
            pass

    def raw_backbone() -> None:  # body + head on crops that are already there
        for start in range(0, crops, model.batch_size):
            model.network.features(ready[start : start + model.batch_size], layers)

    for _ in range(2):  # warm-up: allocator, kernels, caches
        rcnn_stage()
        raw_backbone()
    raw, full = [], []
    for _ in range(repeats):
        raw.append(timed(raw_backbone, device))
        full.append(timed(rcnn_stage, device))
    raw_s, full_s = statistics.median(raw), statistics.median(full)
    return {
        "crops": crops,
        "repeats": repeats,
        "raw_crops_per_s": crops / raw_s,
        "rcnn_crops_per_s": crops / full_s,
        "fraction": raw_s / full_s,
        "warp_share_of_stage": max(0.0, 1.0 - raw_s / full_s),
        "raw_s": raw,
        "rcnn_s": full,
    }


def run_rcnn_bench(cfg: RunConfig, *, device: torch.device, crops: int, repeats: int) -> dict[str, Any]:
    """One bench record (without device / version fields: the command adds them)."""
    from harness import data as data_layer

    d = cfg.data
    test_split = data_layer.default_splits(d.dataset)[1]
    dataset = data_layer.build_dataset(d.dataset, d.test_split or test_split, min_size=d.min_size,
                                       max_size=d.max_size, synthetic=d.synthetic,
                                       synthetic_hard=d.synthetic_hard)
    image, _ = dataset[0]
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, dataset.num_classes)
    assert isinstance(model, RCNN)
    figures = measure(model, image, crops=crops, repeats=repeats, device=device)
    return {
        "kind": "rcnn_cnn_stage",
        "init": f"weights:{cfg.model.weights}" if cfg.model.weights else "random",
        "bench": "rcnn_cnn_stage",
        "backbone": cfg.model.backbone,
        "crop_size": model.crop_size,
        "batch_size": model.batch_size,
        "layers": list(model.test_layers()),
        "image_size": [int(image.shape[1]), int(image.shape[2])],
        "dataset": cfg.data.dataset,
        "target": TARGET,
        **figures,
        "config": to_dict(cfg.rcnn),
    }


def bench_rcnn_command(
    backbone: str = typer.Option("tiny", help="Backbone of the region CNN."),
    device: str = typer.Option("auto", help="auto | cpu | cuda"),
    crops: int = typer.Option(1024, min=1, help="Regions per timed pass."),
    repeats: int = typer.Option(7, min=1, help="Timed passes per path (medians are reported)."),
    results: Path = typer.Option(Path("results"), help="bench.jsonl is appended here."),
    set_: list[str] = typer.Option([], "--set", help="Config overrides as for `harness run` (rcnn.crop_size=112)."),
) -> None:
    """R-CNN's CNN-stage throughput (warp + CNN) as a fraction of the backbone's raw batched throughput."""
    from harness.config import ConfigError, build_config, parse_set_options
    from harness.results import append_record, device_info, git_sha, library_versions, now_iso
    from harness.runner import resolve_device

    console = Console(stderr=True)
    try:
        overrides = {"model.backbone": backbone, "device": device, **parse_set_options(set_)}
        cfg = build_config(detector="rcnn", overrides=overrides)
        dev = resolve_device(cfg.device)
    except ConfigError as err:
        console.print(f"[bold red]error:[/] {err}", highlight=False)
        raise typer.Exit(2)
    started = now_iso()
    record = run_rcnn_bench(cfg, device=dev, crops=crops, repeats=repeats)
    record.update({"started": started, "finished": now_iso(), "git_sha": git_sha(),
                   "versions": library_versions(), "device": device_info(dev)})
    append_record(results / "bench.jsonl", record)
    table = Table(title=f"harness bench-rcnn ({record['device']['type']}: {record['device']['name']}, "
                        f"{record['device']['threads']} threads, {backbone}, {record['crop_size']}px crops, "
                        f"batch {record['batch_size']})")
    for col in ("figure", "value", "target"):
        table.add_column(col)
    table.add_row("backbone raw, crops/s", f"{record['raw_crops_per_s']:.0f}", "")
    table.add_row("R-CNN warp + CNN, crops/s", f"{record['rcnn_crops_per_s']:.0f}", "")
    table.add_row("fraction", f"{record['fraction']:.3f}", f">= {TARGET}")
    Console().print(table)
    console.print(f"appended to {results / 'bench.jsonl'}")
