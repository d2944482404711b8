"""The building blocks of a report and the number formatting shared by all sections.

A :class:`Section` is a list of blocks (:class:`Note`, :class:`Table`,
:class:`Figure`). Sections hold *plain text* only; the renderers
(:mod:`harness.report.html`, :mod:`harness.report.markdown`) escape every
string they emit, so data (class names, paths, config strings, reasons) can
never inject markup.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any, Union

import pandas as pd

DASH = "—"  # shown for a missing / null value


@dataclass
class Note:
    """A paragraph of plain text (escaped by the renderer)."""

    text: str
    kind: str = "note"  # "note" | "warning"


@dataclass
class Table:
    """A table: ``display`` (strings, shown) and ``data`` (raw values, written as CSV).

    ``name`` is the CSV file stem; it must be unique within a report.
    """

    name: str
    title: str
    display: pd.DataFrame
    data: pd.DataFrame
    caption: str = ""

    @property
    def csv_name(self) -> str:
        return f"{self.name}.csv"


@dataclass
class Figure:
    """A rendered PNG figure (bytes), embedded as a data URI in HTML."""

    name: str
    png: bytes
    alt: str
    caption: str = ""
    width_px: int = 0


@dataclass
class Panel:
    """One JPEG picture of a gallery row, with its title (plain text)."""

    jpeg: bytes
    title: str
    alt: str
    width: int = 0
    height: int = 0


@dataclass
class Gallery:
    """Rows of pictures shown side by side (the detection gallery), embedded as JPEG data URIs in HTML.

    ``rows[i]`` is labelled ``labels[i]``; ``name`` is unique within a report.
    """

    name: str
    title: str
    labels: list[str]
    rows: list[list[Panel]]
    caption: str = ""


Block = Union[Note, Table, Figure, Gallery]


@dataclass
class Section:
    title: str
    anchor: str
    intro: str = ""
    blocks: list[Block] = field(default_factory=list)

    def add(self, block: Block | None) -> None:
        if block is not None:
            self.blocks.append(block)

    @property
    def tables(self) -> list[Table]:
        return [b for b in self.blocks if isinstance(b, Table)]

    @property
    def figures(self) -> list[Figure]:
        return [b for b in self.blocks if isinstance(b, Figure)]


def slug(text: str) -> str:
    s = re.sub(r"[^a-z0-9]+", "_", str(text).lower()).strip("_")
    return s or "x"


# --------------------------------------------------------------------------- #
# number formatting
# --------------------------------------------------------------------------- #
def is_num(v: Any) -> bool:
    if isinstance(v, bool) or v is None:
        return False
    try:
        return not math.isnan(float(v)) and not math.isinf(float(v))
    except (TypeError, ValueError):
        return False


def fmt_num(v: Any, sig: int = 3) -> str:
    """``v`` with ``sig`` significant digits, never in exponent notation above 1e-4."""
    if not is_num(v):
        return DASH
    x = float(v)
    if x == 0:
        return "0"
    ax = abs(x)
    if ax >= 10 ** sig:
        return f"{x:,.0f}"
    if ax < 1e-4:
        return f"{x:.{sig - 1}e}"
    decimals = max(0, sig - 1 - math.floor(math.log10(ax)))
    return f"{x:.{decimals}f}"


def fmt_pct(v: Any, decimals: int = 1) -> str:
    """A fraction in [0, 1] as a percentage number (``0.812`` -> ``"81.2"``)."""
    if not is_num(v):
        return DASH
    return f"{100.0 * float(v):.{decimals}f}"


def fmt_pm(mean: Any, std: Any, n: int, fmt=fmt_pct) -> str:
    """``mean ± std`` when there is more than one run, else ``mean``."""
    if not is_num(mean):
        return DASH
    if n > 1 and is_num(std):
        return f"{fmt(mean)} ± {fmt(std)}"
    return fmt(mean)


def fmt_ratio(v: Any) -> str:
    if not is_num(v):
        return DASH
    x = float(v)
    return f"{x:.1f}×" if x < 100 else f"{x:.0f}×"


def fmt_int(v: Any) -> str:
    if not is_num(v):
        return DASH
    return f"{int(round(float(v))):,}"


_UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"]


def fmt_bytes(v: Any) -> str:
    """Bytes in binary units (``1536`` -> ``"1.50 KiB"``)."""
    if not is_num(v):
        return DASH
    x = float(v)
    i = 0
    while abs(x) >= 1024 and i < len(_UNITS) - 1:
        x /= 1024.0
        i += 1
    return f"{int(x)} B" if i == 0 else f"{fmt_num(x)} {_UNITS[i]}"


def fmt_text(v: Any) -> str:
    if v is None:
        return DASH
    if isinstance(v, float) and math.isnan(v):
        return DASH
    s = str(v)
    return s if s else DASH


def display_frame(rows: list[dict[str, str]], columns: list[str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=columns).fillna(DASH)
