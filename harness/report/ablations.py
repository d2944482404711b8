"""Ablations: for every config key that varies across the ok runs of one
detector on one dataset, the metric against the key, with error bars over seeds.

Keys are the flattened ``config`` (``model.box_weight``), plus the
record's top-level ``backbone``, ``init`` and ``profile``. Seeds are the
error-bar dimension, never an ablation axis; keys naming run-specific
locations (``*_dir``, ``*_path``) are ignored.
"""
from __future__ import annotations

import json
from typing import Any

import pandas as pd

from . import plots
from .blocks import DASH, Note, Section, Table, display_frame, fmt_num, fmt_pm, slug
from .records import RecordSet, detector_label, detector_order, num
from .sections import mean_std, primary_metric

_TOP_LEVEL = ("backbone", "init", "profile")
_UNSET = "(unset)"
_IGNORED_LAST = {"run_id", "output", "out", "results", "device", "git_sha"}


def ignored_key(key: str) -> bool:
    last = key.rsplit(".", 1)[-1].lower()
    return ("seed" in last or last in _IGNORED_LAST or last.endswith("_dir")
            or last.endswith("_path") or last in {"dir", "path"})


def run_keys(row: pd.Series) -> dict[str, Any]:
    keys = dict(row["config_flat"] or {})
    for k in _TOP_LEVEL:
        if k not in keys:
            keys[k] = row[k]
    return keys


def _hashable(v: Any) -> Any:
    if v is None or (isinstance(v, float) and v != v):
        return _UNSET
    if isinstance(v, (dict, list)):
        return json.dumps(v, sort_keys=True)
    return v


def varying_keys(g: pd.DataFrame) -> list[str]:
    per_run = [run_keys(r) for _, r in g.iterrows()]
    names = sorted({k for d in per_run for k in d})
    out = []
    for k in names:
        if ignored_key(k):
            continue
        vals = {_hashable(d.get(k)) for d in per_run}
        if len(vals) > 1:
            out.append(k)
    return out


def _sort_values(vals: list[Any]) -> tuple[list[Any], bool]:
    numeric = all(num(v) is not None and not isinstance(v, str) for v in vals)
    if numeric:
        return sorted(vals, key=float), True
    return sorted(vals, key=lambda v: (v == _UNSET, str(v))), False


def ablations(rs: RecordSet) -> Section:
    sec = Section("Ablations", "ablations",
                  "For every setting that differs between successful runs of the same detector "
                  "on the same dataset: the accuracy for each value, mean ± one standard "
                  "deviation over seeds (n = number of runs).")
    ok = rs.ok
    y_col, y_label = primary_metric(ok)
    rows, data = [], []
    groups = sorted(ok.groupby(["detector", "dataset"], dropna=False),
                    key=lambda kg: (detector_order(kg[0][0]), str(kg[0][1])))
    for gi, ((det, dataset), g) in enumerate(groups):
        if len(g) < 2:
            continue
        keys = varying_keys(g)
        if not keys:
            continue
        title = f"{detector_label(det)} on {dataset}"
        if len(keys) > 1:
            sec.add(Note(f"{title}: {len(keys)} settings vary together ({', '.join(keys)}); "
                         "each plot averages over the other settings."))
        panels = []
        per_run = [(run_keys(r), r) for _, r in g.iterrows()]
        for key in keys:
            by_value: dict[Any, list[pd.Series]] = {}
            for d, r in per_run:
                by_value.setdefault(_hashable(d.get(key)), []).append(r)
            values, numeric = _sort_values(list(by_value))
            means, stds, ns = [], [], []
            for v in values:
                runs = by_value[v]
                m, s, n = mean_std(r[y_col] for r in runs)
                t, _, _ = mean_std(r["test_s_median"] for r in runs)
                seeds = sorted({int(r["seed"]) for r in runs if num(r["seed"]) is not None})
                rows.append({"Detector": detector_label(det), "Dataset": str(dataset),
                             "Setting": key, "Value": str(v), "Runs": str(len(runs)),
                             "Seeds": ", ".join(map(str, seeds)) or DASH,
                             y_label: fmt_pm(m, s, n),
                             "Test (ms/img)": fmt_num(1000 * t) if t else DASH})
                data.append(dict(detector=det, dataset=dataset, key=key, value=v,
                                 runs=len(runs), seeds=" ".join(map(str, seeds)),
                                 metric=y_col, mean=m, std=s, n=n, test_s_per_img=t))
                if m is not None:
                    means.append(100 * m)
                    stds.append(100 * s if s is not None else None)
                    ns.append(n)
            kept = [v for v in values if mean_std(r[y_col] for r in by_value[v])[0] is not None]
            panels.append(plots.AblationPanel(key, numeric, kept, means, stds, ns))
        sec.add(plots.ablation(f"ablation_{gi + 1}_{slug(str(det))}", title, str(det),
                               panels[:12], y_label))
        if len(panels) > 12:
            sec.add(Note(f"{title}: {len(panels) - 12} more varying settings in the table only."))
    if not rows:
        sec.add(Note("No setting varies between successful runs of the same detector and "
                     "dataset yet: nothing to ablate."))
        return sec
    sec.add(Table("ablations", "Accuracy per setting value", display_frame(rows, list(rows[0])),
                  pd.DataFrame(data)))
    return sec
