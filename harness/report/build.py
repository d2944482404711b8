"""``build_report``: run records in, one report (HTML or Markdown) plus one CSV per table out.

The report is a pure function of the records (runs.jsonl, and bench.jsonl and
reproduce.jsonl beside it) and of published.csv: no clock, no network, nothing
hard-coded.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import pandas as pd

from . import html as html_out
from . import markdown as md_out
from .ablations import ablations
from .benchmarks import benchmarks
from .blocks import Note, Section, slug
from .claims import claims
from .extra_passes import extra_passes
from .gallery import detections
from .papers import against_papers
from .published import load_published
from .records import RecordSet, load_records
from .reproductions import reproductions
from .sections import accuracy, provenance, status_counts, storage, summary
from .speed import speed
from .training import training

FORMATS = ("html", "md")
OUTPUT_NAMES = {"html": "index.html", "md": "summary.md"}

SectionBuilder = Callable[[RecordSet, pd.DataFrame], Section]
SECTIONS: list[tuple[str, SectionBuilder]] = [
    ("Summary", lambda rs, pub: summary(rs)),
    ("Speed", speed),
    ("Accuracy", lambda rs, pub: accuracy(rs)),
    ("Detections", lambda rs, pub: detections(rs)),
    ("Training", lambda rs, pub: training(rs)),
    ("Storage", storage),
    ("Benchmarks", lambda rs, pub: benchmarks(rs)),
    ("Against the papers", against_papers),
    ("Reproductions", reproductions),
    ("Claims", lambda rs, pub: claims(rs, pub)),
    ("Ablations", lambda rs, pub: ablations(rs)),
    ("Extra test passes", lambda rs, pub: extra_passes(rs)),
    ("Provenance", lambda rs, pub: provenance(rs)),
]


class ReportSectionWarning(UserWarning):
    """A section could not be built from the records; the rest of the report was."""


def build_sections(rs: RecordSet, published: pd.DataFrame,
                   progress: Callable[[str], None] | None = None) -> list[Section]:
    sections = []
    for title, builder in SECTIONS:
        if progress is not None:
            progress(title)
        try:
            sections.append(builder(rs, published))
        except Exception as exc:  # one odd record must not cost the whole report
            msg = f"section {title!r} could not be built: {type(exc).__name__}: {exc}"
            warnings.warn(msg, ReportSectionWarning, stacklevel=2)
            sections.append(Section(title, slug(title), blocks=[Note(msg, "warning")]))
    return sections


def write_csvs(sections: list[Section], out: Path) -> list[Path]:
    paths, seen = [], set()
    for s in sections:
        for t in s.tables:
            if t.csv_name in seen:
                raise RuntimeError(f"two tables named {t.csv_name}")
            seen.add(t.csv_name)
            p = out / t.csv_name
            t.data.to_csv(p, index=False)
            paths.append(p)
    return paths


def build_report(results: Path, out: Path, *, fmt: str = "html",
                 progress: Callable[[str], None] | None = None) -> Path:
    """Write the report of the records in ``results`` into ``out`` and return its path.

    ``results`` is a directory holding ``runs.jsonl`` or a ``.jsonl`` file. Writes
    ``out/index.html`` (``fmt="html"``) or ``out/summary.md`` (``fmt="md"``, figures
    under ``out/figures/``), plus one CSV per table beside it. ``progress`` is called
    with each section's title before it is built. Raises
    :class:`~harness.report.records.NoRecordsError` when there is no record.
    """
    fmt = str(fmt).lower()
    if fmt not in FORMATS:
        raise ValueError(f"unknown report format {fmt!r}: use one of {', '.join(FORMATS)}")
    rs = load_records(Path(results))
    published = load_published()
    sections = build_sections(rs, published, progress)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_csvs(sections, out)
    target = out / OUTPUT_NAMES[fmt]
    counts = status_counts(rs)
    if fmt == "html":
        text = html_out.render(sections, source=str(rs.source), summary_line=counts)
    else:
        text = md_out.render(sections, out, source=str(rs.source), summary_line=counts)
    target.write_text(text, encoding="utf-8")
    return target
