"""``harness report`` through typer, as harness/cli.py registers it."""
from __future__ import annotations

import typer
from report_fixtures import make_records, write_runs
from typer.testing import CliRunner

from harness.cli.report import report_command


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("report")(report_command)

    @app.callback()
    def main() -> None:  # keeps "report" a subcommand, as in the real CLI
        pass

    return app


def test_cli_writes_report(tmp_path):
    results = write_runs(tmp_path / "results", make_records()[:3])
    out = tmp_path / "reports"
    res = CliRunner().invoke(_app(), ["report", "--results", str(results), "--out", str(out)])
    assert res.exit_code == 0, res.output
    for section in ["Summary", "Speed", "Accuracy", "Storage", "Against the papers",
                    "Ablations", "Provenance"]:
        assert f"report: {section}" in res.stdout
    assert str(out / "index.html") in res.stdout
    assert (out / "index.html").is_file() and (out / "summary.csv").is_file()


def test_cli_markdown(tmp_path):
    results = write_runs(tmp_path / "results", make_records()[:2])
    res = CliRunner().invoke(_app(), ["report", "--results", str(results),
                                      "--out", str(tmp_path / "md"), "--format", "md"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "md" / "summary.md").is_file()


def test_cli_no_records_exits_nonzero(tmp_path):
    res = CliRunner().invoke(_app(), ["report", "--results", str(tmp_path / "nothing"),
                                      "--out", str(tmp_path / "out")])
    assert res.exit_code == 1
    assert "No run records" in res.stderr
    assert "Traceback" not in res.output
    assert not (tmp_path / "out" / "index.html").exists()


def test_cli_unknown_format(tmp_path):
    results = write_runs(tmp_path / "results", make_records()[:1])
    res = CliRunner().invoke(_app(), ["report", "--results", str(results), "--format", "pdf"])
    assert res.exit_code != 0
    assert "html or md" in res.stderr
