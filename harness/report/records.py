"""Read ``runs.jsonl`` and flatten the run records into a pandas DataFrame.

Every record is read defensively: any field may be missing or null (failed
and interrupted runs), and future detectors may add keys. A line that is not
valid JSON (or not a JSON object) is skipped with a
:class:`MalformedRecordWarning` naming the file and line number; it is also
listed in the report's Provenance section.

A resumed run has several records with the same ``run_id`` (``interrupted``,
then ``ok``): the last one counts (:attr:`RecordSet.latest`, :attr:`RecordSet.ok`);
every record is still listed under Provenance.

The bench and reproduce records beside the runs file (``bench.jsonl``,
``reproduce.jsonl``; either may be missing) are read the same way and kept
as they are, in file order (:attr:`RecordSet.bench`, :attr:`RecordSet.reproduce`).
"""
from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from harness.run.init_record import init_kind, init_label  # noqa: F401 (re-exported for the sections)
from harness.run.results import RECORDS_FILE as RUNS_FILE
from harness.run.results import SkippedLine, scan_records

BENCH_FILE = "bench.jsonl"
REPRODUCE_FILE = "reproduce.jsonl"
KNOWN_DETECTORS = ("rcnn", "fast", "faster")
DETECTOR_NAMES = {"rcnn": "R-CNN", "fast": "Fast R-CNN", "faster": "Faster R-CNN"}
KNOWN_VERSIONS = ("python", "torch", "torchvision", "opencv", "numpy")


class NoRecordsError(Exception):
    """There is no run record to report on."""


class MalformedRecordWarning(UserWarning):
    """A line of a runs file was skipped."""


Skipped = SkippedLine


@dataclass(frozen=True)
class SideRecord:
    """One record of ``bench.jsonl`` or ``reproduce.jsonl``, as read, and where it was read."""

    source: str  # "path:line"
    record: dict[str, Any]


@dataclass
class RecordSet:
    source: Path
    runs: pd.DataFrame  # one row per record, all statuses, in file order
    skipped: list[Skipped] = field(default_factory=list)
    bench: list[SideRecord] = field(default_factory=list)  # bench.jsonl, in file order
    reproduce: list[SideRecord] = field(default_factory=list)  # reproduce.jsonl, in file order

    @property
    def results_dir(self) -> Path:
        return self.source.parent

    @property
    def latest(self) -> pd.DataFrame:
        """One row per run: the last record of each run id (a resumed run's earlier ones go)."""
        return self.runs.drop_duplicates("run_id", keep="last")

    @property
    def superseded(self) -> pd.DataFrame:
        """The records followed by a later record of the same run id."""
        return self.runs[self.runs.duplicated("run_id", keep="last")]

    @property
    def ok(self) -> pd.DataFrame:
        latest = self.latest
        return latest[latest["status"] == "ok"]


# --------------------------------------------------------------------------- #
# defensive accessors
# --------------------------------------------------------------------------- #
def get(d: Any, *keys: str) -> Any:
    """``d[k1][k2]...`` or ``None`` when any level is missing or not a dict."""
    for k in keys:
        if not isinstance(d, dict):
            return None
        d = d.get(k)
    return d


def num(x: Any) -> float | None:
    if isinstance(x, bool) or x is None:
        return None
    if isinstance(x, (int, float)):
        f = float(x)
        return None if math.isnan(f) or math.isinf(f) else f
    if isinstance(x, str):
        try:
            f = float(x)
        except ValueError:
            return None
        return None if math.isnan(f) or math.isinf(f) else f
    return None


def text(x: Any) -> str | None:
    if x is None:
        return None
    if isinstance(x, (dict, list)):
        return json.dumps(x, sort_keys=True)
    return str(x)


def num_list(x: Any) -> list[float] | None:
    if not isinstance(x, (list, tuple)):
        return None
    out = [num(v) for v in x]
    if not out or any(v is None for v in out):
        return None
    return out  # type: ignore[return-value]


def flatten_config(cfg: Any, prefix: str = "") -> dict[str, Any]:
    """Nested dict -> ``{"model.anchor_sizes": "[32, 64, 128]", ...}``.

    Lists and other non-scalars become their JSON text, so values are hashable.
    """
    out: dict[str, Any] = {}
    if not isinstance(cfg, dict):
        return out
    for k, v in cfg.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            if v:
                out.update(flatten_config(v, key + "."))
            else:
                out[key] = "{}"
        elif isinstance(v, (list, tuple)):
            out[key] = json.dumps(v)
        elif v is None or isinstance(v, (bool, int, float, str)):
            out[key] = v
        else:
            out[key] = str(v)
    return out


def detector_label(det: Any) -> str:
    if det is None or (isinstance(det, float) and math.isnan(det)):
        return "unknown detector"
    return DETECTOR_NAMES.get(str(det), str(det))


def detector_order(det: Any) -> tuple[int, str]:
    s = str(det)
    return (KNOWN_DETECTORS.index(s), s) if s in KNOWN_DETECTORS else (len(KNOWN_DETECTORS), s)


# --------------------------------------------------------------------------- #
# loading
# --------------------------------------------------------------------------- #
def resolve_results_file(results: Path) -> Path:
    results = Path(results)
    if results.is_dir():
        return results / RUNS_FILE
    return results


def read_jsonl(path: Path) -> tuple[list[tuple[int, dict]], list[Skipped]]:
    """Records with their line numbers; each skipped line also raises a warning."""
    records, skipped = scan_records(path)
    for skip in skipped:
        warnings.warn(f"{skip.file}:{skip.line}: skipping line: {skip.error}", MalformedRecordWarning, stacklevel=2)
    return records, skipped


def record_row(rec: dict, source: str, lineno: int) -> dict[str, Any]:
    """One flat row of the runs DataFrame; nested parts are kept as objects."""
    metrics = rec.get("metrics") if isinstance(rec.get("metrics"), dict) else {}
    timing = rec.get("timing") if isinstance(rec.get("timing"), dict) else {}
    test_median = num(get(timing, "test_s_per_img", "median"))
    versions = rec.get("versions") if isinstance(rec.get("versions"), dict) else {}
    stages = get(timing, "stages")
    row: dict[str, Any] = {
        "run_id": text(rec.get("run_id")) or f"(no run_id, line {lineno})",
        "status": text(rec.get("status")) or "unknown",
        "reason": text(rec.get("reason")),
        "schema_version": rec.get("schema_version"),
        "detector": text(rec.get("detector")) or "unknown",
        "dataset": text(rec.get("dataset")) or "unknown",
        "backbone": text(rec.get("backbone")) or "unknown",
        "seed": num(rec.get("seed")),
        "init": init_label(rec.get("init")),
        "init_kind": init_kind(rec.get("init")),
        "profile": text(rec.get("profile")),
        "preset": text(rec.get("preset")),
        "preset_row": text(rec.get("preset_row")),
        "scale": text(rec.get("scale")),
        "preset_overrides": rec.get("preset_overrides") if isinstance(rec.get("preset_overrides"), dict) else None,
        "row_key": _row_key(rec.get("config")),
        "git_sha": text(rec.get("git_sha")),
        "device_type": text(get(rec, "device", "type")),
        "device_name": text(get(rec, "device", "name")),
        "device_threads": num(get(rec, "device", "threads")),
        "map50_voc07": num(metrics.get("map50_voc07")),
        "map50_area": num(metrics.get("map50_area")),
        "coco_ap": num(metrics.get("coco_ap")),
        "coco_ap50": num(metrics.get("coco_ap50")),
        "coco_ap75": num(metrics.get("coco_ap75")),
        "coco_ap_small": num(metrics.get("coco_ap_small")),
        "coco_ap_medium": num(metrics.get("coco_ap_medium")),
        "coco_ap_large": num(metrics.get("coco_ap_large")),
        # the other test passes: alternating's step-2 system (Faster R-CNN Table 3), truncated SVD (Fast R-CNN 3.1)
        "map50_voc07_unshared": num(get(rec, "metrics_unshared", "map50_voc07")),
        "map50_voc07_svd": num(get(rec, "metrics_svd", "map50_voc07")),
        "test_s_median_svd": num(get(timing, "svd", "test_s_per_img", "median")),
        "head_s": num(get(rec, "svd", "head_s_per_img", "without_svd")),
        "head_s_svd": num(get(rec, "svd", "head_s_per_img", "with_svd")),
        "train_s": num(timing.get("train_s")),
        "train_iters": num(timing.get("train_iters")),
        "test_images": num(timing.get("test_images")),
        "test_s_median": test_median,
        "test_s_p90": num(get(timing, "test_s_per_img", "p90")),
        "test_s_noprop_median": num(get(timing, "test_s_per_img_without_proposals", "median")),
        "fps": (1.0 / test_median) if test_median else None,
        "peak_rss_bytes": num(get(rec, "memory", "peak_rss_bytes")),
        "cuda_max_allocated_bytes": num(get(rec, "memory", "cuda_max_allocated_bytes")),
        "disk_bytes": num(get(rec, "disk", "bytes")),
        "disk_extrapolated_bytes": num(get(rec, "disk", "extrapolated", "bytes")),
        "disk_extrapolated_to": text(get(rec, "disk", "extrapolated", "to")),
        "started": text(rec.get("started")),
        "finished": text(rec.get("finished")),
        "source": f"{source}:{lineno}",
        # nested parts, kept as python objects
        "versions": {str(k): text(v) for k, v in versions.items()},
        "stages": {str(k): num(v) for k, v in stages.items() if num(v) is not None}
        if isinstance(stages, dict) else {},
        "train_stages": {
            str(k): num(v) for k, v in get(timing, "train_stages").items() if num(v) is not None
        } if isinstance(get(timing, "train_stages"), dict) else {},
        "per_class": metrics.get("per_class") if isinstance(metrics.get("per_class"), dict) else {},
        "pr_curves": metrics.get("pr_curves") if isinstance(metrics.get("pr_curves"), dict) else {},
        "proposal_recall": metrics.get("proposal_recall")
        if isinstance(metrics.get("proposal_recall"), dict) else {},
        # extra test passes of issue 17's tables: Fast R-CNN scored by SVMs; tested on a separate RPN's proposals
        "map50_voc07_svm": num(get(rec, "metrics_svm", "map50_voc07")),
        "map50_area_svm": num(get(rec, "metrics_svm", "map50_area")),
        "rpn_variants": get(rec, "rpn_proposals", "variants")
        if isinstance(get(rec, "rpn_proposals", "variants"), dict) else {},
        "disk_items": get(rec, "disk", "items")
        if isinstance(get(rec, "disk", "items"), dict) else {},
        "config_flat": flatten_config(rec.get("config")),
    }
    return row


def _row_key(config: Any) -> str | None:
    """The preset-row identity of a record's config (its hash, seed aside); None without a config."""
    if not isinstance(config, dict) or not config:
        return None
    from harness.config.presets import row_key

    return row_key(config)


def load_side_records(path: Path) -> tuple[list[SideRecord], list[Skipped]]:
    """The records of a bench / reproduce file; none (and no error) when it does not exist."""
    if not path.is_file():
        return [], []
    records, skipped = read_jsonl(path)
    return [SideRecord(f"{path}:{lineno}", rec) for lineno, rec in records], skipped


def load_records(results: Path) -> RecordSet:
    """All records of ``results`` (a directory holding ``runs.jsonl``, or a ``.jsonl`` file).

    ``bench.jsonl`` and ``reproduce.jsonl`` are read from the same directory when they
    exist. Raises :class:`NoRecordsError` when the runs file is missing or holds no record.
    """
    path = resolve_results_file(Path(results))
    if not path.is_file():
        raise NoRecordsError(
            f"No run records: {path} does not exist. Run a detector first "
            f"(each run appends one record to {RUNS_FILE}), or pass --results DIR."
        )
    records, skipped = read_jsonl(path)
    if not records:
        extra = f" ({len(skipped)} malformed line(s) skipped)" if skipped else ""
        raise NoRecordsError(f"No run records in {path}{extra}. Run a detector first.")
    rows = [record_row(rec, str(path), lineno) for lineno, rec in records]
    df = pd.DataFrame(rows)
    df["_order"] = range(len(df))
    bench, bench_skipped = load_side_records(path.parent / BENCH_FILE)
    reproduce, reproduce_skipped = load_side_records(path.parent / REPRODUCE_FILE)
    return RecordSet(source=path, runs=df, skipped=skipped + bench_skipped + reproduce_skipped,
                     bench=bench, reproduce=reproduce)


def group_label(detector: Any, backbone: Any, dataset: Any) -> str:
    return f"{detector_label(detector)} · {backbone} · {dataset}"
