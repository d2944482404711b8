"""What every command shares: the consoles, the one-line error, progress bars, choice enums.

Commands import this module; it imports no command, so the CLI has no import circle.
"""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from harness.config import DETECTORS, DEVICES, PROFILES

console = Console(stderr=True)  # messages, progress, errors
out = Console()  # results: summary tables

# CLI choices come from the config's own lists, so a new detector or profile needs no CLI edit.
Detector = Enum("Detector", {name: name for name in DETECTORS}, type=str)
Profile = Enum("Profile", {name: name for name in PROFILES}, type=str)
Device = Enum("Device", {name: name for name in DEVICES}, type=str)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: message`` on one line (no traceback) and exit with ``code`` (2: bad input)."""
    # soft_wrap: one line, however long, so file paths in it stay whole and copyable
    console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def say(message: str) -> None:
    """A plain message on stderr (data, not rich markup)."""
    console.print(message, markup=False, highlight=False)


class _Bar:
    """Adapter from rich's Progress to the ``progress(desc, total)`` callback the harness takes."""

    def __init__(self, progress: Progress, desc: str, total: int) -> None:
        self.progress, self.task = progress, progress.add_task(desc, total=total, loss="")

    def advance(self, n: int = 1, **fields: float) -> None:
        extra = {k: f"{k} {v:.3f}" for k, v in fields.items()}
        self.progress.update(self.task, advance=n, **extra)

    def close(self) -> None:
        self.progress.refresh()


@contextmanager
def progress_bars() -> Iterator:
    """A ``progress(desc, total) -> bar`` factory drawing rich progress bars on stderr."""
    columns = [
        TextColumn("[bold]{task.description:>5}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[loss]}"),
    ]
    with Progress(*columns, console=console, transient=False) as progress:
        yield lambda desc, total: _Bar(progress, desc, total)


def fmt(value: object, digits: int = 3) -> str:
    return "-" if value is None else (f"{value:.{digits}f}" if isinstance(value, float) else str(value))


def table(title: str, columns: tuple[str, ...], rows: list[tuple[str, ...]], *, caption: str | None = None) -> Table:
    """A rich table of plain-text cells (names and paths are data: escaped, never markup)."""
    t = Table(title=escape(title), caption=caption)
    for col in columns:
        t.add_column(col)
    for row in rows:
        t.add_row(*(escape(cell) for cell in row))
    return t
