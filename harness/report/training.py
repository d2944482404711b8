"""The Training section: loss curves per detector from each run's ``train_log.jsonl``.

Per dataset, the latest ok run of each detector with a training log
(:mod:`harness.train.train_log`): one panel for the total loss and one per loss
term, one line per detector, against the optimiser step (a multi-stage scheme's
steps run on from stage to stage).
"""
from __future__ import annotations

import pandas as pd

from harness.train.train_log import TRAIN_LOG_FILE, read_train_log

from . import plots
from .blocks import Note, Section, slug
from .records import RecordSet, detector_label, detector_order

MAX_POINTS = 200  # per line: longer logs are thinned evenly (the last entry always kept)


def _thin(entries: list[dict]) -> list[dict]:
    if len(entries) <= MAX_POINTS:
        return entries
    step = len(entries) / MAX_POINTS
    picked = [entries[int(i * step)] for i in range(MAX_POINTS - 1)]
    return picked + [entries[-1]]


def _latest_logs(rs: RecordSet, runs: pd.DataFrame) -> list[tuple[str, str, list[dict]]]:
    found = []
    for det in sorted(runs["detector"].unique(), key=detector_order):
        for _, row in runs[runs["detector"] == det].sort_values("_order", ascending=False).iterrows():
            entries = read_train_log(rs.results_dir / str(row["run_id"]) / TRAIN_LOG_FILE)
            if entries:
                found.append((det, str(row["run_id"]), _thin(entries)))
                break
    return found


def _panels(logs: list[tuple[str, str, list[dict]]]) -> list[plots.LinePanel]:
    terms: list[str] = []
    for _, _, entries in logs:
        for e in entries:
            terms += [k for k in (e.get("losses") or {}) if k not in terms]
    panels = []
    for term in ["total", *terms]:
        lines = []
        for det, run_id, entries in logs:
            points = [(e["step"], e["loss"] if term == "total" else (e.get("losses") or {}).get(term))
                      for e in entries]
            points = [(x, float(y)) for x, y in points if isinstance(y, (int, float))]
            if points:
                lines.append(plots.Line(f"{detector_label(det)} ({run_id})", det,
                                        [float(x) for x, _ in points], [y for _, y in points]))
        panels.append(plots.LinePanel(f"{term} loss" if term == "total" else term, "optimiser step", "loss", lines))
    return panels


def training(rs: RecordSet) -> Section:
    sec = Section("Training", "training",
                  intro="Loss curves of the latest ok run of each detector per dataset, from "
                  "results/<run_id>/train_log.jsonl (the loss of the logged step, every train.log_every steps "
                  "and at each epoch's end; R-CNN: its fine-tuning stage).")
    ok = rs.ok
    for dataset in ok["dataset"].unique() if not ok.empty else []:
        logs = _latest_logs(rs, ok[ok["dataset"] == dataset])
        fig = plots.line_panels(f"loss_curves_{slug(dataset)}", f"{dataset}: training losses",
                                _panels(logs)) if logs else None
        sec.add(fig)
    if not sec.blocks:
        sec.add(Note("No run kept a training log (results/<run_id>/train_log.jsonl)."))
    return sec
