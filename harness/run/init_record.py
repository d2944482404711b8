"""The run record's ``init``: ``"random"``, or what loading ``--weights`` did.

Records before issue 20 hold ``init: "weights:<file>"`` (a string); from then on a
run with a weights file records a dict (``kind, file, sha256, required, loaded,
missing, mismatched, unexpected, skipped, looks_like, partial``, see
:class:`detectors.weights.WeightsReport`); the built-in pre-training (``model.init=pretrained`` /
``pretrained-body``) records the same dict with ``kind`` ``pretrained`` / ``pretrained-body`` and its
``label`` (name and sha256). :func:`init_label` reads every form.
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
    before = record.get("init")
    record["init"] = report.as_record()
    if isinstance(before, str) and before.startswith("pretrained"):  # the built-in pre-training's file
        record["init"].update({"kind": before.split(" ", 1)[0], "label": before})
    if report.partial:
        log.warning("weights %s loaded PARTIALLY (model.weights_partial=true): %s", report.file, report.summary())
    else:
        log.info("weights %s: %s", report.file, report.summary())


def init_label(init: Any) -> str | None:
    """``random``, ``weights:<file>`` or ``weights:<file> (partial)``, from either form of ``init``."""
    if init is None:
        return None
    if isinstance(init, dict):
        kind = init.get("kind")
        label = f"weights:{init.get('file')}" if kind == "weights" else str(init.get("label") or kind)
        return label + (" (partial)" if init.get("partial") else "")
    return str(init)


def init_kind(init: Any) -> str | None:
    """``random``, ``weights`` or ``weights (partial)``."""
    label = init_label(init)
    if label is None:
        return None
    if label.startswith("weights:"):
        return "weights (partial)" if label.endswith(" (partial)") else "weights"
    return label.split(" ", 1)[0]  # random, pretrained, pretrained-body
