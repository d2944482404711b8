"""Proposal recall against the IoU threshold (Faster R-CNN Figure 2, Fast R-CNN Figure 3).

Reads ``metrics.proposal_recall[source].recall_vs_iou`` (``{"iou", "num_proposals", "recall"}``,
written by :func:`harness.train.engine.proposal_recall_curve`): one panel per number
of proposals (300 / 1000 / 2000 by default), one line per run group and source.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .blocks import Figure, Table, display_frame, fmt_int, fmt_pct
from .plots import _METHOD_STYLE, _new, _render, _styled, detector_color, mpl_text
from .preset_rows import PresetTable
from .records import num, num_list


@dataclass
class IoUSeries:
    label: str  # the run group
    detector: str
    method: str  # proposal source: rpn, selective_search, external
    iou: list[float]
    by_count: dict[int, list[float]]  # proposals per image -> recall at each IoU


def series_of(label: str, detector: str, method: str, pr: object) -> IoUSeries | None:
    """The record's ``recall_vs_iou`` of one source as a series; None when absent or malformed."""
    riou = pr.get("recall_vs_iou") if isinstance(pr, dict) else None
    if not isinstance(riou, dict):
        return None
    ious, counts, recall = num_list(riou.get("iou")), num_list(riou.get("num_proposals")), riou.get("recall")
    if not ious or not counts or not isinstance(recall, list) or len(recall) != len(counts):
        return None
    rows = [num_list(r) for r in recall]
    if any(not r or len(r) != len(ious) for r in rows):
        return None
    return IoUSeries(label, detector, method, ious, {int(n): r for n, r in zip(counts, rows)})


def figure(series: list[IoUSeries]) -> Figure | None:
    if not series:
        return None
    counts = sorted({n for s in series for n in s.by_count})
    with _styled():
        fig = _new(4.6 * len(counts), 4.2)
        axes = np.atleast_1d(fig.subplots(1, len(counts), squeeze=False)).ravel()
        for ax, n in zip(axes, counts):
            for s in series:
                r = s.by_count.get(n)
                if r is None:
                    continue
                ls, marker = _METHOD_STYLE.get(s.method, (":", "^"))
                ax.plot(s.iou, [100 * v for v in r], color=detector_color(s.detector), linestyle=ls, marker=marker,
                        markersize=4, label=mpl_text(f"{s.label} · {s.method}", 60))
            ax.set_ylim(0, 102)
            ax.set_xlabel("IoU threshold")
            ax.set_ylabel("recall of GT boxes (%)")
            ax.set_title(f"{n} proposals per image")
        axes[0].legend(fontsize=8, loc="lower left")
        fig.tight_layout()
        return _render(fig, "accuracy_recall_vs_iou", "Proposal recall against the IoU threshold",
                       "Faster R-CNN Figure 2 / Fast R-CNN Figure 3: recall of the ground-truth boxes by the first "
                       "N proposals, as the IoU needed to count a box as found rises from 0.5 to 0.95.")


def table(series: list[IoUSeries]) -> Table | None:
    rows = [{"group": s.label, "method": s.method, "num_proposals": n, **{f"{t:g}": r[j] for j, t in enumerate(s.iou)}}
            for s in series for n, r in s.by_count.items()]
    if not rows:
        return None
    data = pd.DataFrame(rows)
    display = data.copy()
    for c in display.columns[3:]:
        display[c] = display[c].map(fmt_pct)
    display = display.rename(columns={c: f"recall@{c} (%)" for c in display.columns[3:]})
    return Table("accuracy_recall_vs_iou", "Proposal recall vs IoU threshold", display.astype(str), data,
                 "One run per group and source: the one with the most proposals per image, then the lowest seed.")


def preset_table(name: str, t: PresetTable) -> Table | None:
    """Each row's recall against IoU, per proposal source and number of proposals: the mean over its ok
    runs (seeds), with the proposals per image the runs had (a run capped at 300 has no more at "2000")."""
    data = []
    for r in t.rows:
        found: dict[tuple[str, int], list[list[float]]] = {}
        width: dict[str, list[float]] = {}
        ious: list[float] = []
        for pr_all in r.ok.get("proposal_recall", []):
            for method, pr in (pr_all.items() if isinstance(pr_all, dict) else []):
                s = series_of(r.label, r.detector, str(method), pr)
                if s is None:
                    continue
                ious = s.iou
                width.setdefault(s.method, []).append(num(pr.get("mean_proposals")) or 0.0)
                for n, rec in s.by_count.items():
                    found.setdefault((s.method, n), []).append(rec)
        for (method, n), recs in found.items():
            data.append({"preset": t.preset_id, "scale": t.scale, "row": r.label, "method": method,
                         "runs": len(recs), "proposals_per_img": float(np.mean(width[method])), "num_proposals": n,
                         **{f"{iou:g}": float(np.mean([rec[j] for rec in recs])) for j, iou in enumerate(ious)}})
    if not data:
        return None
    frame = pd.DataFrame(data)
    shown = [{"Row": d["row"], "Source": d["method"], "Runs": str(d["runs"]),
              "proposals/img": fmt_int(d["proposals_per_img"]), "N": fmt_int(d["num_proposals"]),
              **{f"recall@{k} (%)": fmt_pct(v) for k, v in d.items() if k[:1].isdigit()}} for d in data]
    return Table(f"{name}_recall_vs_iou", "Proposal recall against the IoU threshold (ours)",
                 display_frame(shown, list(shown[0])), frame,
                 "Recall of the ground-truth test boxes by the first N proposals, mean over the row's ok runs; "
                 "proposals/img: what the runs' proposal source returned (N above it repeats its recall).")
