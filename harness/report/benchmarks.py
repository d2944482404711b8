"""Benchmarks: the figures of the ``harness bench*`` commands (``bench.jsonl``) and the
presets' wall times (``reproduce.jsonl``).

- one table with the latest figure of each bench kind per setting (machine, backbone,
  init): its value, its target, met or missed;
- the curves of the latest ``bench-scaling`` record per setting, as line plots and one
  long table;
- per preset and scale, the latest ``harness reproduce`` invocation that ran a row (else
  the latest): its wall time against the preset's stated time, marked when it did not
  run every row; and the wall time of all its invocations.

Every figure names the machine it was measured on (device type, name, threads). Older
R-CNN bench records have no ``kind``, only ``bench: "rcnn_cnn_stage"``.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .bench_common import (
    FIGURE_LABELS,
    KIND_LABELS,
    NO_NETWORK,
    SPEED_NAMES,
    as_dict,
    bench_kind,
    device_columns,
    latest_by,
    machine,
    setting,
    table_or_note,
)
from .bench_curves import scaling_block
from .blocks import (
    DASH,
    Note,
    Section,
    fmt_int,
    fmt_num,
    fmt_text,
)
from .records import (
    BENCH_FILE,
    REPRODUCE_FILE,
    RecordSet,
    SideRecord,
    get,
    num,
    text,
)

# --------------------------------------------------------------------------- #
# figures and targets
# --------------------------------------------------------------------------- #
_TARGET = re.compile(r"^\s*(>=|<=|>|<|=)?\s*([-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)\s*$")
_THROUGHPUT = re.compile(r"^(inference|training)_throughput_(.+)_over_(.+)$")

@dataclass(frozen=True)
class BenchFigure:
    name: str
    value: float | None
    target: str | None = None  # ">= 1.2"
    recorded_met: bool | None = None  # the record's own verdict, where it has one
    detail: str = ""

    @property
    def met(self) -> bool | None:
        judged = meets(self.value, self.target)
        return self.recorded_met if judged is None else judged

    @property
    def result(self) -> str:
        if self.met is not None:
            return "met" if self.met else "missed"
        return "no target" if self.target is None else "not judged"


def target_text(target: Any) -> str | None:
    """A numeric target means "at least"; a string (``"<= 1.25"``) is kept as written."""
    if num(target) is not None:
        return f">= {float(target):g}"
    return text(target)


def meets(value: float | None, target: str | None) -> bool | None:
    m = _TARGET.match(target or "")
    if value is None or m is None:
        return None
    bound = float(m.group(2))
    return {">=": value >= bound, "<=": value <= bound, ">": value > bound,
            "<": value < bound, "=": value == bound}[m.group(1) or ">="]


def _join(*parts: str) -> str:
    return "; ".join(p for p in parts if p)


def _ratio_figures(rec: dict[str, Any], detail: Callable[[str], str]) -> list[BenchFigure]:
    targets, met = as_dict(rec.get("targets")), as_dict(rec.get("met"))
    return [BenchFigure(str(k), num(v), target_text(targets.get(k)),
                        met.get(k) if isinstance(met.get(k), bool) else None, detail(str(k)))
            for k, v in as_dict(rec.get("ratios")).items()]


def _image_text(rec: dict[str, Any]) -> str:
    size = rec.get("image_size")
    if isinstance(size, list) and len(size) == 2 and all(num(s) is not None for s in size):
        return f"image {fmt_int(size[0])}×{fmt_int(size[1])} px (h×w)"
    return ""


def _faster_detail(rec: dict[str, Any], name: str) -> str:
    speed = as_dict(rec.get("speed"))
    m = _THROUGHPUT.match(name)
    if m:
        key, unit = (("infer_s_per_img", "s/img") if m.group(1) == "inference"
                     else ("train_s_per_iter", "s/iter"))
        a, b = m.group(2), m.group(3)
        part = (f"{SPEED_NAMES.get(a, a)} {fmt_num(get(speed, a, key))} vs "
                f"{SPEED_NAMES.get(b, b)} {fmt_num(get(speed, b, key))} {unit}")
    elif name in ("eval_time_over_backbone_time", "eval_time_over_backbone_time_svd"):
        model, what = ("ours_svd", f"test with SVD head (ranks {rec.get('svd_ranks')})") if name.endswith("_svd") \
            else ("ours", "test")
        part = (f"{what} {fmt_num(get(speed, model, 'infer_s_per_img'))} vs backbone alone "
                f"{fmt_num(get(speed, 'backbone_only', 'infer_s_per_img'))} s/img")
    else:
        part = ""
    flops = num(get(rec, "flops_per_image", "total"))
    return _join(part, _image_text(rec), f"{fmt_num(flops / 1e9)} GFLOPs/img" if flops else "")


def _best_images_per_s(rec: dict[str, Any], workers: Any) -> float | None:
    """Best images/s of the pass with ``workers`` processes (0: in the main process, no pool)."""
    passes = get(rec, "passes", "in_process" if workers == 0 else f"workers_{fmt_int(workers)}")
    entries = passes if isinstance(passes, list) else [passes]
    values = [num(get(e, "images_per_s")) for e in entries]
    values = [v for v in values if v is not None]
    return max(values) if values else None


def _proposals_detail(rec: dict[str, Any], name: str) -> str:
    workers = num(rec.get("workers"))
    datasets = rec.get("datasets")
    names = ", ".join(map(str, datasets)) if isinstance(datasets, list) else fmt_text(datasets)
    where = f"{fmt_int(rec.get('images'))} images of {names}"
    if name == "parallel_speedup":
        local = _best_images_per_s(rec, 0)
        return _join(f"{fmt_int(workers)} workers {fmt_num(_best_images_per_s(rec, workers))} vs "
                     f"1 worker {fmt_num(_best_images_per_s(rec, 1))} images/s (best pass)",
                     f"main process alone {fmt_num(local)} images/s" if local is not None else "", where)
    if name == "hit_vs_recompute":
        hit, search = num(rec.get("cache_hit_s_per_image_median")), num(
            rec.get("search_s_per_image_median"))
        return _join(f"hit {fmt_num(1000 * hit if hit else None)} ms vs search "
                     f"{fmt_num(1000 * search if search else None)} ms per image", where)
    return where


def _rcnn_figures(rec: dict[str, Any]) -> list[BenchFigure]:
    crop = fmt_int(rec.get("crop_size"))
    detail = _join(f"{fmt_num(rec.get('rcnn_crops_per_s'))} vs raw "
                   f"{fmt_num(rec.get('raw_crops_per_s'))} crops/s",
                   f"{crop}×{crop} crops, batch {fmt_int(rec.get('batch_size'))}",
                   _image_text(rec))
    return [BenchFigure("fraction", num(rec.get("fraction")), target_text(rec.get("target")),
                        detail=detail)]


def _scaling_figures(rec: dict[str, Any]) -> list[BenchFigure]:
    growth = as_dict(rec.get("rcnn_growth"))
    points = rec.get("rcnn_disk_vs_images")
    sizes = [num(get(p, "train_images")) for p in (points if isinstance(points, list) else [])]
    span = f" ({fmt_int(sizes[0])} → {fmt_int(sizes[-1])})" if sizes else ""
    detail = f"{fmt_num(growth.get('images_ratio'))}× the training images{span}"
    return [BenchFigure(k, num(growth.get(k)), detail=detail)
            for k in ("disk_ratio", "peak_rss_ratio") if k in growth]


def figures(rec: dict[str, Any]) -> list[BenchFigure]:
    """The headline figures of one bench record (unknown kinds: their ``ratios``, if any)."""
    kind = bench_kind(rec)
    if kind == "rcnn_cnn_stage":
        return _rcnn_figures(rec)
    if kind == "scaling":
        return _scaling_figures(rec)
    if kind == "faster_vs_torchvision":
        return _ratio_figures(rec, lambda name: _faster_detail(rec, name))
    if kind == NO_NETWORK:
        return _ratio_figures(rec, lambda name: _proposals_detail(rec, name))
    return _ratio_figures(rec, lambda name: "")



def _figure_rows(side: SideRecord, n: int) -> tuple[list[dict], list[dict]]:
    rec = side.record
    kind, where, bb, ini = setting(rec)
    rows, data = [], []
    for f in figures(rec):
        rows.append({"Benchmark": KIND_LABELS.get(kind, kind),
                     "Figure": FIGURE_LABELS.get(f.name, f.name), "Value": fmt_num(f.value),
                     "Target": f.target or DASH, "Result": f.result, "Machine": where,
                     "Backbone": bb, "Init": ini, "Detail": f.detail or DASH,
                     "Finished": fmt_text(rec.get("finished")), "Records": str(n)})
        data.append({"kind": kind, "figure": f.name, "value": f.value, "target": f.target,
                     "met": f.met, **device_columns(rec), "backbone": bb, "init": ini,
                     "detail": f.detail, "finished": text(rec.get("finished")),
                     "git_sha": text(rec.get("git_sha")), "records": n, "source": side.source})
    return rows, data



def _figures_block(sec: Section, rs: RecordSet) -> None:
    if not rs.bench:
        sec.add(Note(f"No bench record in {rs.results_dir / BENCH_FILE} (missing or empty): "
                     "harness bench, bench-rcnn, bench-proposals and bench-scaling append "
                     "to it."))
        return
    rows, data = [], []
    for side, n in latest_by(rs.bench, setting):
        r, d = _figure_rows(side, n)
        rows += r
        data += d
    table_or_note(sec, rows, data, f"{len(rs.bench)} bench record(s), none with a figure this report knows.",
                   "bench_figures", "Latest bench figures per machine, backbone and init",
                   "The latest record of each benchmark per machine (device type · name · "
                   "threads), backbone and init; Records = how many records of that setting "
                   "there are. Values are ratios (higher is better, except the time ratios "
                   "whose target says <=); Result compares Value with Target.")


# --------------------------------------------------------------------------- #
# presets: wall time against stated time
# --------------------------------------------------------------------------- #
def _complete(rec: dict[str, Any]) -> bool:
    if isinstance(rec.get("complete"), bool):
        return rec["complete"]
    runs, ran = num(rec.get("runs")), num(rec.get("ran"))
    return runs is not None and ran == runs and not num(rec.get("failed"))


def _complete_text(rec: dict[str, Any]) -> str:
    if _complete(rec):
        return "yes"
    skipped, failed = num(rec.get("skipped")) or 0, num(rec.get("failed")) or 0
    parts = []
    if skipped:
        parts.append(f"{fmt_int(skipped)} of {fmt_int(rec.get('runs'))} rows skipped "
                     "(earlier runs reused)")
    if failed:
        parts.append(f"{fmt_int(failed)} failed")
    if rec.get("interrupted") is True:
        parts.insert(0, f"interrupted after {fmt_int(rec.get('ran'))} of {fmt_int(rec.get('runs'))} rows ran")
    return "incomplete" + (": " + ", ".join(parts) if parts else "")


def _within_text(rec: dict[str, Any]) -> str:
    wall, stated = num(rec.get("wall_minutes")), num(rec.get("stated_minutes"))
    if not _complete(rec):
        return "not comparable (incomplete)"
    if wall is None or not stated:
        return "no stated time"
    within = rec.get("within_stated")
    within = within if isinstance(within, bool) else wall <= stated
    return "yes" if within else f"no ({fmt_num(wall / stated)}× the stated time)"


def _reproduce_row(side: SideRecord, n: int) -> tuple[dict, dict]:
    rec = side.record
    row = {"Preset": fmt_text(rec.get("preset")), "Scale": fmt_text(rec.get("scale")),
           "Machine": machine(rec), "Dataset": fmt_text(rec.get("dataset")),
           "Rows": f"{fmt_int(rec.get('ran'))} ran, {fmt_int(rec.get('skipped'))} skipped, "
                   f"{fmt_int(rec.get('failed'))} failed of {fmt_int(rec.get('runs'))}",
           "Complete": _complete_text(rec), "Wall (min)": fmt_num(rec.get("wall_minutes")),
           "Stated (min)": fmt_num(rec.get("stated_minutes")),
           "Within stated": _within_text(rec), "Finished": fmt_text(rec.get("finished")),
           "Invocations": str(n)}
    data = {"preset": text(rec.get("preset")), "scale": text(rec.get("scale")),
            **device_columns(rec), "dataset": text(rec.get("dataset")),
            **{k: num(rec.get(k)) for k in ("seeds", "runs", "ran", "skipped", "failed")},
            "complete": _complete(rec), "wall_minutes": num(rec.get("wall_minutes")),
            "stated_minutes": num(rec.get("stated_minutes")), "within_stated": _within_text(rec),
            "finished": text(rec.get("finished")), "invocations": n, "source": side.source}
    return row, data


def _reproduce_block(sec: Section, rs: RecordSet) -> None:
    if not rs.reproduce:
        sec.add(Note(f"No preset wall times in {rs.results_dir / REPRODUCE_FILE} (missing or "
                     "empty): each harness reproduce invocation appends one record."))
        return
    def key(r: dict[str, Any]) -> tuple[str, str]:
        return text(r.get("preset")) or "unknown", text(r.get("scale")) or "unknown"

    # the latest invocation that ran something: a later pass that found every row done (reproduce --all
    # run again) would otherwise hide the one that measured the preset
    worked = [side for side in rs.reproduce
              if (num(side.record.get("ran")) or 0) + (num(side.record.get("failed")) or 0)]
    chosen = {key(side.record): side for side, _ in latest_by(worked, key)}
    pairs = []
    for side, n in latest_by(rs.reproduce, key):
        row, data = _reproduce_row(chosen.get(key(side.record), side), n)
        total = sum(num(o.record.get("wall_minutes")) or 0.0 for o in rs.reproduce if key(o.record) == key(side.record))
        row["Wall, all invocations (min)"], data["wall_minutes_all_invocations"] = fmt_num(total), total
        pairs.append((row, data))
    rows, data = [p[0] for p in pairs], [p[1] for p in pairs]
    table_or_note(sec, rows, data, "no preset wall time", "bench_reproduce_wall_time",
                   "Preset wall time against its stated time",
                   "Per preset and scale, the latest harness reproduce invocation that ran a row (else the "
                   "latest), and the wall time of all its invocations in this folder. Stated times "
                   "are the presets' own estimates (cpu scale, 2 CPU cores); only an invocation "
                   "that ran every row says whether the preset fits: one that skipped rows "
                   "(their runs were already recorded ok and were reused) or had failed rows is "
                   "marked incomplete.")
    by_scale: dict[str, float] = {}
    for d in data:
        scale = d["scale"] or "unknown"
        by_scale[scale] = by_scale.get(scale, 0.0) + d["wall_minutes_all_invocations"]
    sec.add(Note("Wall time of every reproduce invocation in this folder, all presets together: " + "; ".join(
        f"{scale} scale {fmt_num(total)} min" for scale, total in sorted(by_scale.items())) + "."))


def benchmarks(rs: RecordSet) -> Section:
    sec = Section("Benchmarks", "benchmarks",
                  "Figures of the bench commands (bench.jsonl) and the presets' wall times "
                  "(reproduce.jsonl), each with the machine it was measured on.")
    _figures_block(sec, rs)
    scaling_block(sec, rs)
    _reproduce_block(sec, rs)
    return sec
