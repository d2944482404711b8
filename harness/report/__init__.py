"""``harness report``: one self-contained report (HTML or Markdown) of the run records.

Public API: :func:`build_report`, :class:`NoRecordsError`, and
:func:`harness.cli.report.report_command` (the typer command).
"""
from .build import build_report
from .records import MalformedRecordWarning, NoRecordsError

__all__ = ["build_report", "NoRecordsError", "MalformedRecordWarning"]
