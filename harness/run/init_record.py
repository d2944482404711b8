"""The run record's ``init``: ``"random"``, or what loading ``--weights`` did.

Records before issue 20 hold ``init: "weights:<file>"`` (a string); from then on a
run with a weights file records a dict (``kind, file, sha256, required, loaded,
missing, mismatched, unexpected, skipped, looks_like, partial``, see
:class:`detectors.weights.WeightsReport`). :func:`init_label` reads both.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the report reads records without torch
    from detectors.weights import WeightsReport

log = logging.getLogger(__name__)


def record_weights(record: dict[str, Any], report: WeightsReport | None) -> None:
    """Put the load report into the record's ``init`` and the log (nothing for random init)."""
    if report is None:
        return
    record["init"] = report.as_record()
    if report.partial:
        log.warning("weights %s loaded PARTIALLY (model.weights_partial=true): %s", report.file, report.summary())
    else:
        log.info("weights %s: %s", report.file, report.summary())


def init_label(init: Any) -> str | None:
    """``random``, ``weights:<file>`` or ``weights:<file> (partial)``, from either form of ``init``."""
    if init is None:
        return None
    if isinstance(init, dict):
        label = f"weights:{init.get('file')}" if init.get("kind") == "weights" else str(init.get("kind"))
        return label + (" (partial)" if init.get("partial") else "")
    return str(init)


def init_kind(init: Any) -> str | None:
    """``random``, ``weights`` or ``weights (partial)``."""
    label = init_label(init)
    if label is None:
        return None
    if label.startswith("weights:"):
        return "weights (partial)" if label.endswith(" (partial)") else "weights"
    return label
