"""``harness report``: write the HTML (or Markdown) report of every recorded run."""
from __future__ import annotations

from pathlib import Path

import typer

from harness.report.build import FORMATS, build_report
from harness.report.records import NoRecordsError


def report_command(
    results: Path = typer.Option(
        Path("results"), "--results",
        help="Directory holding runs.jsonl (or a .jsonl file) with one record per run."),
    out: Path = typer.Option(
        Path("reports"), "--out",
        help="Directory to write the report (index.html or summary.md) and its CSVs into."),
    fmt: str = typer.Option("html", "--format", help="html or md"),
) -> None:
    """Write one self-contained report comparing the detectors, and against the papers."""
    if fmt.lower() not in FORMATS:
        typer.echo(f"Unknown --format {fmt!r}: use html or md.", err=True)
        raise typer.Exit(2)
    try:
        path = build_report(results, out, fmt=fmt,
                            progress=lambda name: typer.echo(f"report: {name}"))
    except NoRecordsError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    typer.echo(f"Wrote {path}")
