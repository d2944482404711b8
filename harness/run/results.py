"""Run records: one self-describing JSON line per run in ``runs.jsonl``.

A record is appended with a single ``write`` on a file opened ``O_APPEND`` under
an exclusive ``flock``: two runs writing at once never interleave, and a crash
leaves either the whole line or nothing of it. Readers skip a bad line with a
warning naming its number.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import json
import logging
import math
import os
import platform
import resource
import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from harness.run.storage import storage_error

RECORDS_FILE = "runs.jsonl"
log = logging.getLogger(__name__)


def now_iso() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def new_run_id(detector: str) -> str:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"{stamp}-{detector}-{secrets.token_hex(2)}"


def git_sha(cwd: Path | None = None) -> str | None:
    """Commit of the harness source (None outside a git checkout); ``+dirty`` if modified."""
    root = cwd or Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=root, capture_output=True, text=True, timeout=5
        ).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


_LOADED_SHA: list[str | None] = []  # git_sha() when this module was imported: the code this process runs


def code_sha() -> str | None:
    """The commit of the code this process runs: :func:`git_sha` as it was when the harness was imported
    (Python loads each module once), so a commit made while a long ``reproduce`` runs does not relabel its
    later records. Falls back to the current :func:`git_sha` if that first look failed."""
    if not _LOADED_SHA or _LOADED_SHA[0] is None:
        _LOADED_SHA[:] = [git_sha()]
    return _LOADED_SHA[0]


code_sha()


def library_versions() -> dict[str, str | None]:
    import cv2
    import torchvision

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "opencv": cv2.__version__,
        "numpy": np.__version__,
    }


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_info(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {"type": device.type, "threads": torch.get_num_threads(), "cpu": cpu_name()}
    if device.type == "cuda":
        info["name"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    else:
        info["name"] = info["cpu"]
    return info


def record_envelope(started: str, device: torch.device) -> dict[str, Any]:
    """The fields every record carries (runs and benches): when, which code, which libraries, which device."""
    return {"started": started, "finished": now_iso(), "git_sha": code_sha(), "versions": library_versions(),
            "device": device_info(device)}


def peak_rss_bytes() -> int:
    """Peak resident set size of this process (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


def jsonable(value: Any) -> Any:
    """Records are strict JSON: NaN/inf become null, tensors and tuples plain values."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, torch.Tensor):
        return jsonable(value.tolist())
    if isinstance(value, (np.floating, np.integer)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def append_record(path: Path, record: dict[str, Any]) -> None:
    """Append one record as one line, whole or not at all.

    Raises:
        StorageError: the file cannot be written (e.g. the disk is full); whatever
            part of the line reached the file has been cut off again.
    """
    line = (json.dumps(jsonable(record), allow_nan=False, sort_keys=False) + "\n").encode()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as err:
        raise storage_error(path, "run record to", err) from err
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        # a previous writer killed mid-line would glue our record to its fragment
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            line = b"\n" + line
        try:
            written = 0
            while written < len(line):  # a nearly full disk can take part of the line, then fail
                n = os.write(fd, line[written:])
                if n <= 0:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                written += n
            os.fsync(fd)
        except OSError as err:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)  # still under the lock: nobody appended after us
            raise storage_error(path, "run record to", err) from err
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


@dataclass
class SkippedLine:
    """A line of a records file that is not a JSON object."""

    file: str
    line: int
    error: str


def scan_records(path: Path) -> tuple[list[tuple[int, dict[str, Any]]], list[SkippedLine]]:
    """``(line number, record)`` for every parseable line, and the lines skipped.

    Each skipped line is logged as a warning naming the file and line number.
    """
    records: list[tuple[int, dict[str, Any]]] = []
    skipped: list[SkippedLine] = []
    with path.open(encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                error = f"malformed JSON ({err.msg} at column {err.colno})"
            else:
                if isinstance(record, dict):
                    records.append((number, record))
                    continue
                error = f"not a JSON object ({type(record).__name__})"
            log.warning("%s:%d: skipped a malformed record: %s", path, number, error)
            skipped.append(SkippedLine(str(path), number, error))
    return records, skipped


def read_records(path: Path) -> list[dict[str, Any]]:
    """All parseable records of a ``runs.jsonl`` (or of ``DIR/runs.jsonl``)."""
    if path.is_dir():
        path = path / RECORDS_FILE
    if not path.exists():
        return []
    return [record for _, record in scan_records(path)[0]]
