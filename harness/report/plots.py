"""Seaborn / matplotlib figures, rendered to PNG bytes with the Agg canvas.

No pyplot: every figure is a :class:`matplotlib.figure.Figure` drawn on a
:class:`~matplotlib.backends.backend_agg.FigureCanvasAgg`, so building a
report never touches a display or global figure state. Each detector has one
fixed colour from seaborn's colour-blind-safe ``"colorblind"`` palette, the
same in every plot; every axis says what it measures and in which unit.
"""
from __future__ import annotations

import io
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import matplotlib

matplotlib.use("Agg")  # harmless if already Agg; the report never opens a window

import numpy as np  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure as MplFigure  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from matplotlib.ticker import FixedLocator, FuncFormatter  # noqa: E402

from .blocks import Figure, fmt_bytes, fmt_num  # noqa: E402
from .records import KNOWN_DETECTORS, detector_label, detector_order  # noqa: E402

DPI = 100
_PALETTE = sns.color_palette("colorblind", 10)
# fixed: R-CNN blue, Fast R-CNN orange, Faster R-CNN green (indices 0, 1, 2)
_FIXED = {det: _PALETTE[i] for i, det in enumerate(KNOWN_DETECTORS)}
_LINESTYLES = ["-", "--", ":", "-."]
_METHOD_STYLE = {"rpn": ("-", "o"), "selective_search": ("--", "s")}


def detector_color(det: str) -> tuple[float, float, float]:
    """The detector's colour; unknown (future) detectors get a stable extra colour."""
    if det in _FIXED:
        return _FIXED[det]
    return _PALETTE[3 + zlib.crc32(str(det).encode()) % (len(_PALETTE) - 3)]


def mpl_text(s: object, limit: int = 40) -> str:
    """Data text made safe for matplotlib (no mathtext) and not too long."""
    t = str(s)
    if len(t) > limit:
        t = t[: limit - 1] + "…"
    return t.replace("$", r"\$")


def _new(width: float, height: float) -> MplFigure:
    fig = MplFigure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _render(fig: MplFigure, name: str, alt: str, caption: str = "") -> Figure:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    width = int(round(fig.get_size_inches()[0] * DPI))
    return Figure(name=name, png=buf.getvalue(), alt=alt, caption=caption, width_px=width)


def _styled():
    return sns.axes_style("whitegrid")


def _detector_legend(ax, dets: Sequence[str], **kw) -> None:
    handles = [Patch(color=detector_color(d), label=detector_label(d))
               for d in sorted(set(dets), key=detector_order)]
    ax.legend(handles=handles, **kw)


# --------------------------------------------------------------------------- #
@dataclass
class Point:
    label: str
    detector: str
    x: float
    y: float


def map_vs_speed(points: list[Point], y_label: str) -> Figure | None:
    """Accuracy against test time per image, one colour per detector."""
    if not points:
        return None
    with _styled():
        fig = _new(8, 4.2)
        ax = fig.add_subplot()
        for p in points:
            ax.scatter(p.x, p.y, s=70, color=detector_color(p.detector), edgecolor="black",
                       linewidth=0.5, zorder=3)
            ax.annotate(mpl_text(p.label, 50), (p.x, p.y), textcoords="offset points",
                        xytext=(6, 4), fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel("test time per image (s, median, log scale)")
        ax.set_ylabel(y_label)
        ax.set_title("Accuracy against test speed (ok runs, mean over seeds)")
        _detector_legend(ax, [p.detector for p in points], loc="best", fontsize=8)
        return _render(fig, "summary_map_vs_speed",
                       "Scatter plot of mAP against test time per image")


# --------------------------------------------------------------------------- #
@dataclass
class StageBar:
    label: str
    detector: str
    stages: dict[str, float]  # seconds per image
    total_s: float | None = None


def stage_bars(bars: list[StageBar]) -> Figure | None:
    """Per-stage stacked bars: absolute (ms/img) and share of the stage sum (%)."""
    bars = [b for b in bars if b.stages]
    if not bars:
        return None
    stage_names: list[str] = []
    for b in bars:
        for s in b.stages:
            if s not in stage_names:
                stage_names.append(s)
    colors = sns.color_palette("cividis", max(len(stage_names), 2))
    hatches = ["", "//", "..", "xx", "\\\\", "++", "oo", "--"]
    style = {s: (colors[i], hatches[i % len(hatches)]) for i, s in enumerate(stage_names)}
    with _styled():
        fig = _new(12, 1.2 + 0.55 * len(bars) + 0.25 * len(stage_names) / 2)
        ax_abs, ax_pct = fig.subplots(1, 2, sharey=True)
        y = np.arange(len(bars))
        for i, b in enumerate(bars):
            total = sum(b.stages.values())
            left_abs = left_pct = 0.0
            for s in stage_names:
                v = b.stages.get(s)
                if v is None:
                    continue
                c, h = style[s]
                ax_abs.barh(i, v * 1000, left=left_abs, color=c, hatch=h, edgecolor="white")
                pct = 100.0 * v / total if total > 0 else 0.0
                ax_pct.barh(i, pct, left=left_pct, color=c, hatch=h, edgecolor="white")
                left_abs += v * 1000
                left_pct += pct
            ax_abs.annotate(f" {fmt_num(left_abs)} ms", (left_abs, i), va="center", fontsize=8)
        ax_abs.set_yticks(y, [mpl_text(b.label, 55) for b in bars], fontsize=8)
        for tick, b in zip(ax_abs.get_yticklabels(), bars):
            tick.set_color(detector_color(b.detector))
            tick.set_fontweight("bold")
        ax_abs.invert_yaxis()
        ax_abs.set_xlabel("median time per image (ms), stages stacked")
        ax_abs.set_xlim(0, max(sum(b.stages.values()) for b in bars) * 1000 * 1.25)
        ax_pct.set_xlabel("share of the per-image stage time (%)")
        ax_pct.set_xlim(0, 100)
        ax_abs.set_title("Test time per stage")
        ax_pct.set_title("Where the time goes")
        handles = [Patch(facecolor=style[s][0], hatch=style[s][1], edgecolor="white",
                         label=mpl_text(s)) for s in stage_names]
        fig.tight_layout()
        fig.legend(handles=handles, loc="upper center", ncol=min(len(handles), 8),
                   bbox_to_anchor=(0.5, 0.0), fontsize=8, title="stage")
        return _render(fig, "speed_stages", "Stacked bars of test time per stage, per detector")


# --------------------------------------------------------------------------- #
def heatmap(matrix, name: str, title: str, value_label: str) -> Figure | None:
    """Rows = runs (labels), columns = classes, values in %."""
    if matrix is None or matrix.empty:
        return None
    n_rows, n_cols = matrix.shape
    with _styled():
        fig = _new(min(max(8.0, 4.5 + 0.8 * n_cols), 16), 1.8 + 0.5 * n_rows)
        ax = fig.add_subplot()
        sns.heatmap(matrix.astype(float), ax=ax, vmin=0, vmax=100, cmap="viridis",
                    annot=n_cols <= 20, fmt=".1f", annot_kws={"fontsize": 8},
                    cbar_kws={"label": value_label}, linewidths=0.5, linecolor="white")
        ax.set_xticks(np.arange(n_cols) + 0.5, [mpl_text(c, 25) for c in matrix.columns],
                      rotation=35, ha="right", fontsize=8)
        ax.set_yticks(np.arange(n_rows) + 0.5, [mpl_text(r, 55) for r in matrix.index],
                      rotation=0, fontsize=8)
        ax.set_xlabel("class")
        ax.set_ylabel("run (mean over seeds)")
        ax.set_title(mpl_text(title, 90))
        return _render(fig, name, f"Heatmap of per-class AP: {title}")


# --------------------------------------------------------------------------- #
@dataclass
class Curve:
    label: str
    detector: str
    x: list[float]
    y: list[float]
    style: int = 0  # linestyle index (distinguishes runs of one detector)


def pr_curves(per_class: dict[str, list[Curve]], name: str, title: str,
              max_classes: int = 16) -> Figure | None:
    classes = [c for c, curves in per_class.items() if curves][:max_classes]
    if not classes:
        return None
    ncols = min(4, len(classes))
    nrows = (len(classes) + ncols - 1) // ncols
    with _styled():
        fig = _new(max(4.2 * ncols, 8.0), 3.6 * nrows + 0.9)
        axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
        seen: dict[str, Curve] = {}
        for ax, cls in zip(axes, classes):
            for c in per_class[cls]:
                ax.plot(c.x, c.y, color=detector_color(c.detector),
                        linestyle=_LINESTYLES[c.style % len(_LINESTYLES)], linewidth=1.6,
                        drawstyle="steps-post")
                seen.setdefault(c.label, c)
            ax.set_xlim(0, 1.02)
            ax.set_ylim(0, 1.05)
            ax.set_title(mpl_text(cls, 30), fontsize=11)
            ax.set_xlabel("recall (fraction of GT boxes)", fontsize=9)
            ax.set_ylabel("precision (fraction)", fontsize=9)
            ax.tick_params(labelsize=8)
        for ax in axes[len(classes):]:
            ax.set_visible(False)
        from matplotlib.lines import Line2D

        handles = [Line2D([], [], color=detector_color(c.detector),
                          linestyle=_LINESTYLES[c.style % len(_LINESTYLES)],
                          label=mpl_text(lbl, 60))
                   for lbl, c in seen.items()]
        fig.suptitle(mpl_text(title, 90))
        fig.tight_layout()
        fig.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 0.0),
                   ncol=min(len(handles), 2), fontsize=9)
        return _render(fig, name, f"Precision-recall curves per class: {title}")


# --------------------------------------------------------------------------- #
@dataclass
class RecallSeries:
    label: str
    detector: str
    method: str
    num_proposals: list[float]
    recall: dict[str, list[float]] = field(default_factory=dict)  # "0.5" -> recalls


def proposal_recall(series: list[RecallSeries]) -> Figure | None:
    series = [s for s in series if s.recall]
    if not series:
        return None
    ious = sorted({k for s in series for k in s.recall}, key=lambda k: (len(k), k))
    with _styled():
        fig = _new(5.2 * len(ious), 4.4)
        axes = np.atleast_1d(fig.subplots(1, len(ious), squeeze=False)).ravel()
        from matplotlib.lines import Line2D

        handles = {}
        for ax, iou in zip(axes, ious):
            for s in series:
                r = s.recall.get(iou)
                if r is None:
                    continue
                ls, marker = _METHOD_STYLE.get(s.method, (":", "^"))
                ax.plot(s.num_proposals, [100 * v for v in r], color=detector_color(s.detector),
                        linestyle=ls, marker=marker, markersize=4)
                key = f"{s.label} · {s.method}"
                handles.setdefault(key, Line2D([], [], color=detector_color(s.detector),
                                               linestyle=ls, marker=marker,
                                               label=mpl_text(key, 70)))
            ax.set_xscale("log")
            ax.set_ylim(0, 102)
            ax.set_xlabel("proposals per image (log scale)")
            ax.set_ylabel("recall of GT boxes (%)")
            ax.set_title(f"Proposal recall at IoU {mpl_text(iou)}")
        fig.tight_layout()
        fig.legend(handles=list(handles.values()), loc="upper center", bbox_to_anchor=(0.5, 0.0),
                   ncol=min(len(handles), 2), fontsize=9)
        return _render(fig, "accuracy_proposal_recall",
                       "Proposal recall against number of proposals per image")


# --------------------------------------------------------------------------- #
@dataclass
class DiskBar:
    label: str
    detector: str
    measured: float | None
    extrapolated: float | None = None


def disk_bars(bars: list[DiskBar]) -> Figure | None:
    bars = [b for b in bars if b.measured is not None or b.extrapolated is not None]
    if not bars:
        return None
    positive = [v for b in bars for v in (b.measured, b.extrapolated) if v and v > 0]
    lo = min(positive) / 10 if positive else 1.0
    hi = max(positive) * 30 if positive else 1e3
    with _styled():
        fig = _new(10, 1.4 + 0.7 * len(bars))
        ax = fig.add_subplot()
        for i, b in enumerate(bars):
            c = detector_color(b.detector)
            y_m, y_e = i - 0.18, i + 0.18
            if b.measured and b.measured > lo:
                ax.barh(y_m, b.measured - lo, left=lo, height=0.34, color=c)
            ax.annotate(f" measured: {fmt_bytes(b.measured)}", (max(b.measured or 0, lo), y_m),
                        va="center", fontsize=8)
            if b.extrapolated and b.extrapolated > lo:
                ax.barh(y_e, b.extrapolated - lo, left=lo, height=0.34, color=c, alpha=0.45,
                        hatch="//", edgecolor=c)
                ax.annotate(f" extrapolated: {fmt_bytes(b.extrapolated)}",
                            (max(b.extrapolated, lo), y_e),
                            va="center", fontsize=8)
        ax.set_xscale("log")
        ax.set_xlim(lo, hi)
        ticks = [1024 ** k * m for k in range(0, 7) for m in (1, 10, 100)]
        ax.xaxis.set_major_locator(FixedLocator([t for t in ticks if lo <= t <= hi]))
        ax.xaxis.set_minor_locator(FixedLocator([]))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: fmt_bytes(v)))
        ax.set_yticks(np.arange(len(bars)), [mpl_text(b.label, 55) for b in bars], fontsize=8)
        for tick, b in zip(ax.get_yticklabels(), bars):
            tick.set_color(detector_color(b.detector))
        ax.invert_yaxis()
        ax.set_xlabel("disk used (bytes, binary units, log scale); hatched = extrapolated")
        ax.set_title("Disk storage per method")
        return _render(fig, "storage_disk", "Bar chart of disk bytes per method")


# --------------------------------------------------------------------------- #
@dataclass
class AblationPanel:
    key: str
    numeric: bool
    values: list  # x values (numbers, or category strings)
    means: list[float]
    stds: list[float | None]
    ns: list[int]


def ablation(name: str, title: str, detector: str, panels: list[AblationPanel],
             y_label: str) -> Figure | None:
    panels = [p for p in panels if p.values]
    if not panels:
        return None
    ncols = min(3, len(panels))
    nrows = (len(panels) + ncols - 1) // ncols
    color = detector_color(detector)
    with _styled():
        fig = _new(4.4 * ncols, 3.4 * nrows + 0.5)
        axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
        for ax, p in zip(axes, panels):
            xs = p.values if p.numeric else list(range(len(p.values)))
            yerr = [0.0 if s is None else s for s in p.stds]
            ax.errorbar(xs, p.means, yerr=yerr, color=color, marker="o", capsize=4,
                        linestyle="-" if p.numeric else "none")
            for x, m, n in zip(xs, p.means, p.ns):
                ax.annotate(f"n={n}", (x, m), textcoords="offset points", xytext=(5, -10),
                            fontsize=7)
            if not p.numeric:
                ax.set_xticks(xs, [mpl_text(v, 18) for v in p.values], rotation=20, ha="right",
                              fontsize=8)
                ax.set_xlim(-0.5, len(xs) - 0.5)
            ax.set_xlabel(mpl_text(p.key, 45) + ("" if p.numeric else " (value)"), fontsize=9)
            ax.set_ylabel(y_label, fontsize=9)
        for ax in axes[len(panels):]:
            ax.set_visible(False)
        fig.suptitle(mpl_text(title, 90) + "  (error bars: ±1 s.d. over seeds)")
        fig.tight_layout()
        return _render(fig, name, f"Ablation plots: {title}")


# --------------------------------------------------------------------------- #
@dataclass
class Line:
    label: str
    detector: str  # sets the colour (a known detector's, or a stable extra one)
    x: list[float]
    y: list[float]


@dataclass
class LinePanel:
    title: str
    x_label: str
    y_label: str
    lines: list[Line]
    log_x: bool = False
    log_y: bool = False


def _tick(v: float) -> str:
    return f"{int(v):,}" if float(v).is_integer() else f"{v:g}"


def _line_panel(ax, panel: LinePanel) -> None:
    for i, line in enumerate(panel.lines):
        sns.lineplot(x=line.x, y=line.y, ax=ax, color=detector_color(line.detector),
                     linestyle=_LINESTYLES[i % len(_LINESTYLES)], marker="o", markersize=5,
                     errorbar=None, label=mpl_text(line.label, 50))
    xs = sorted({x for line in panel.lines for x in line.x})
    ys = [y for line in panel.lines for y in line.y]
    if panel.log_x:
        ax.set_xscale("log")
    if panel.log_y and min(ys) > 0:
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _p: _tick(v)))
    else:
        ax.set_ylim(0, max(max(ys), 0) * 1.12 or 1.0)
    if len(xs) <= 8:  # label the measured points themselves
        ax.xaxis.set_major_locator(FixedLocator(xs))
        ax.xaxis.set_minor_locator(FixedLocator([]))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _p: _tick(v)))
    ax.set_xlabel(mpl_text(panel.x_label, 60), fontsize=9)
    ax.set_ylabel(mpl_text(panel.y_label, 50), fontsize=9)
    ax.set_title(mpl_text(panel.title, 60), fontsize=10)
    ax.tick_params(labelsize=8)
    ax.legend(fontsize=8, loc="best")


def line_panels(name: str, title: str, panels: list[LinePanel], caption: str = "") -> Figure | None:
    """Curves (y against x), one panel per quantity, two panels a row."""
    panels = [LinePanel(p.title, p.x_label, p.y_label, [ln for ln in p.lines if ln.x and ln.y],
                        p.log_x, p.log_y) for p in panels]
    panels = [p for p in panels if p.lines]
    if not panels:
        return None
    ncols = min(2, len(panels))
    nrows = (len(panels) + ncols - 1) // ncols
    with _styled():
        fig = _new(6.0 * ncols, 3.8 * nrows + 0.6)
        axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
        for ax, panel in zip(axes, panels):
            _line_panel(ax, panel)
        for ax in axes[len(panels):]:
            ax.set_visible(False)
        fig.suptitle(mpl_text(title, 110))
        fig.tight_layout()
        return _render(fig, name, f"Line plots: {title}", caption)
