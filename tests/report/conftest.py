"""Fixtures of the report tests; the records themselves are in report_fixtures.py."""
from __future__ import annotations

import warnings

import pytest
from report_fixtures import make_records, write_run_files, write_runs


@pytest.fixture(scope="session")
def html_report(tmp_path_factory):
    """The HTML report of the fixture records, built once: (index.html path, progress calls,
    warnings raised while building)."""
    from harness.report import build_report

    base = tmp_path_factory.mktemp("html_report")
    results = write_runs(base / "results", make_records())
    write_run_files(results)  # gallery.json and train_log.jsonl of one run per detector
    calls: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        path = build_report(results, base / "out", progress=calls.append)
    return path, calls, caught
