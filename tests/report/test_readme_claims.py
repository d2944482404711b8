"""The README's claims table says what the committed `reproduce --all` records say.

The README quotes the report's Claims section on ``results/cpu-amd-epyc-2threads/reproduce-all`` (the
pre-trained default), docs/reproduce-random-init.md on ``reproduce-all-random-init``. This test recomputes
each section from its committed records and fails when the document's table disagrees with it: a verdict, the
verdict counts, or a "mean ± CI" figure quoted for a claim. So new records (or a change to a claim, or to how
verdicts are judged, or to which rows a record matches) cannot land without the table that reports them.
"""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from harness.report.blocks import Table
from harness.report.claims import claims
from harness.report.records import load_records
from harness.report.verdicts import CONTRADICTED, INCONCLUSIVE, NOT_TESTABLE, REPRODUCED

ROOT = Path(__file__).resolve().parents[2]
MACHINE = ROOT / "results" / "cpu-amd-epyc-2threads"
TABLES = {"README.md": MACHINE / "reproduce-all", "docs/reproduce-random-init.md": MACHINE / "reproduce-all-random-init"}
README_VERDICTS = {"reproduced in direction": REPRODUCED, "contradicted": CONTRADICTED,
                   "inconclusive": INCONCLUSIVE, "not testable at `cpu` scale": NOT_TESTABLE}
PLUS_MINUS = re.compile(r"(\d+\.\d+) ± (\d+\.\d+)")


def readme_claim_rows(text: str) -> list[tuple[list[str], str, str]]:
    """``(presets, verdict, ours)`` per row of the table under "**Claims measured**"."""
    section = text[text.index("**Claims measured**"):]
    lines = section[section.index("| preset | claim |"):].splitlines()
    rows = []
    for line in lines[2:]:
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        presets = re.findall(r"`([a-z0-9-]+)`", cells[0])
        verdict = re.sub(r"\*\*(.+?)\*\*.*", r"\1", cells[2]).strip()
        rows.append((presets, README_VERDICTS[verdict], cells[3]))
    return rows


def same_figure(quoted: tuple[str, str], full: tuple[str, str]) -> bool:
    """``quoted`` (mean, half-width as the README prints them) is ``full`` rounded to the README's digits."""
    def close(short: str, long: str) -> bool:
        digits = len(short.split(".")[1])
        return abs(float(short) - float(long)) <= 0.5 * 10 ** -digits + 1e-9
    return close(quoted[0], full[0]) and close(quoted[1], full[1])


@pytest.fixture(scope="module", params=sorted(TABLES))
def document(request):
    """``(the document's text, the report's Claims table on its records)``."""
    records = TABLES[request.param]
    if not (records / "runs.jsonl").is_file():
        pytest.skip(f"no committed records at {records}")
    tables = [b for b in claims(load_records(records)).blocks if isinstance(b, Table)]
    assert tables, "the committed records give no Claims table"
    return (ROOT / request.param).read_text(), tables[0].data


def test_readme_verdict_counts_match_the_report(document):
    text, report_claims = document
    counts = Counter(report_claims["verdict"])
    # the counts sentence may wrap anywhere: any run of whitespace stands for a space
    said = re.search(r"Verdicts: (\d+) reproduced in direction, (\d+) contradicted, (\d+) inconclusive, "
                     r"(\d+) not testable".replace(" ", r"\s+"), text)
    assert said, "README's claims paragraph lost its verdict counts"
    assert [int(n) for n in said.groups()] == [counts[REPRODUCED], counts[CONTRADICTED], counts[INCONCLUSIVE],
                                               counts[NOT_TESTABLE]]


def test_each_readme_row_has_the_reports_verdict_and_figures(document):
    text, report_claims = document
    rows = readme_claim_rows(text)
    # one README row per testable claim (the not-testable ones may share a row), so the (preset, verdict)
    # pairs of the testable rows are the report's
    report_pairs = Counter((p, v) for p, v in zip(report_claims["preset"], report_claims["verdict"], strict=True)
                           if v != NOT_TESTABLE)
    assert Counter((p, v) for presets, v, _ in rows if v != NOT_TESTABLE for p in presets) == report_pairs
    for presets, verdict, ours in rows:
        for preset in presets:
            hits = report_claims[(report_claims["preset"] == preset) & (report_claims["verdict"] == verdict)]
            assert len(hits), f"README: {preset} has a claim '{verdict}' that the report does not give"
            figures = PLUS_MINUS.findall(" ".join(hits["detail"]))
            for quoted in PLUS_MINUS.findall(ours):
                assert any(same_figure(quoted, f) for f in figures), \
                    f"README's {preset} row quotes {' ± '.join(quoted)}, not in the report: {figures}"


def test_same_figure_rounds_to_the_quoted_digits():
    assert same_figure(("0.030", "0.001"), ("0.0301", "0.0012"))
    assert not same_figure(("0.031", "0.001"), ("0.0301", "0.0012"))
    assert not same_figure(("40.1", "3.3"), ("40.1", "3.5"))


def test_readme_rows_parse_on_a_made_up_table():
    text = ("**Claims measured** (x). Verdicts: 1 reproduced in direction, 0 contradicted, 0 inconclusive, "
            "1 not testable.\n\n| preset | claim | our verdict | ours | paper |\n|---|---|---|---|---|\n"
            "| `a-b` | c | **reproduced in direction** (note) | 1.0 ± 0.5; 2.0 ± 0.1 | — |\n"
            "| `x`, `y` | z | not testable at `cpu` scale | why | — |\n\nafter\n")
    assert readme_claim_rows(text) == [(["a-b"], REPRODUCED, "1.0 ± 0.5; 2.0 ± 0.1"),
                                       (["x", "y"], NOT_TESTABLE, "why")]
