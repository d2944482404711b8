"""Out of disk and interrupted writes (issue 9, points 4-6): clear errors, no corrupt file.

A full disk is simulated where the bytes go out: a file whose ``write`` raises
``OSError(ENOSPC)`` part-way, or ``os.write`` accepting half a record and then
failing. A checkpoint write that fails (disk full, Ctrl-C) leaves the previous
checkpoint as it was and no temporary file; a record append that fails leaves
``runs.jsonl`` byte-identical.
"""
from __future__ import annotations

import errno
import io
import json
import os
from pathlib import Path

import pytest
import torch
from dirty_data import TINY_RUN
from typer.testing import CliRunner

import harness.run.checkpoint as checkpoint_module
from harness.cli import app
from harness.run.checkpoint import CHECKPOINT_FILE, save_checkpoint
from harness.run.results import append_record, read_records
from harness.run.storage import StorageError, atomic_write


class _FullDisk(io.RawIOBase):
    """Wraps a binary file; every write past ``room`` bytes fails with ENOSPC (after writing what fits)."""

    def __init__(self, f, room: int) -> None:
        self.f, self.room = f, room

    def writable(self) -> bool:
        return True

    def write(self, data) -> int:
        if self.room <= 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        part = bytes(data)[: self.room]
        self.f.write(part)
        self.room -= len(part)
        return len(part)


def _good_checkpoint(path: Path) -> bytes:
    save_checkpoint(path, {"epoch": 1, "w": torch.arange(10.0)})
    return path.read_bytes()


def test_disk_full_during_torch_save_keeps_the_old_checkpoint(tmp_path: Path, monkeypatch):
    path = tmp_path / CHECKPOINT_FILE
    before = _good_checkpoint(path)
    real_save = torch.save
    # torch.save through a file that fills up after 500 bytes (torch turns the OSError into a RuntimeError)
    monkeypatch.setattr(checkpoint_module.torch, "save", lambda obj, f: real_save(obj, _FullDisk(f, 500)))
    with pytest.raises(StorageError, match=r"cannot write checkpoint .*checkpoint\.pt: No space left on device") as err:
        save_checkpoint(path, {"epoch": 2, "w": torch.zeros(100_000)})
    assert err.value.errno == errno.ENOSPC and "disk is full" in str(err.value)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [CHECKPOINT_FILE]


def test_interrupt_during_a_write_keeps_the_old_file_and_removes_the_temp(tmp_path: Path):
    path = tmp_path / "x.bin"
    atomic_write(path, lambda f: f.write(b"good"))

    def torn(f):
        f.write(b"half of a new fi")
        raise KeyboardInterrupt  # Ctrl-C / SIGTERM mid-write

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, torn)
    assert path.read_bytes() == b"good" and sorted(p.name for p in tmp_path.iterdir()) == ["x.bin"]


def test_disk_full_during_record_append_leaves_runs_jsonl_intact(tmp_path: Path, monkeypatch):
    path = tmp_path / "runs.jsonl"
    append_record(path, {"run_id": "a"})
    before = path.read_bytes()
    real_write, calls = os.write, []

    def half_then_full(fd: int, data: bytes) -> int:
        calls.append(len(data))
        if len(calls) == 1:
            return real_write(fd, data[: len(data) // 2])  # the disk takes half the line...
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # ...then is full

    monkeypatch.setattr(os, "write", half_then_full)
    with pytest.raises(StorageError, match="cannot write run record to .*runs.jsonl: No space left on device"):
        append_record(path, {"run_id": "b", "payload": "x" * 1000})
    monkeypatch.undo()
    assert path.read_bytes() == before  # the half line was cut off again
    append_record(path, {"run_id": "c"})
    assert [r["run_id"] for r in read_records(path)] == ["a", "c"]


def test_a_full_disk_while_logging_stops_the_run_with_a_clear_error(tmp_path: Path, monkeypatch):
    from harness.train import train_log

    def no_space(self, *args, **kwargs):
        if self.name == train_log.TRAIN_LOG_FILE and args and args[0] == "a":
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_open(self, *args, **kwargs)

    real_open = Path.open
    monkeypatch.setattr(Path, "open", no_space)
    result = CliRunner().invoke(app, ["run", "--results", str(tmp_path), *TINY_RUN, "--epochs", "1"])
    text = " ".join(result.output.split())
    assert result.exit_code == 1, result.output
    assert "cannot write training log" in text and "No space left on device" in text and "Traceback" not in text


def test_cli_run_with_a_full_disk_says_so_and_exits_1(tmp_path: Path, monkeypatch):
    def no_space(obj, f):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint_module.torch, "save", no_space)
    result = CliRunner().invoke(app, ["run", "--results", str(tmp_path), *TINY_RUN, "--epochs", "1"])
    text = " ".join(result.output.split())
    assert result.exit_code == 1, result.output
    assert "cannot write checkpoint" in text and "No space left on device" in text and "Traceback" not in text
    (record,) = [json.loads(line) for line in (tmp_path / "runs.jsonl").read_text().splitlines()]
    assert record["status"] == "failed" and "No space left on device" in record["reason"]
    run_dir = tmp_path / record["run_id"]
    # no checkpoint, no temp file: only the training log of the steps before the failed checkpoint
    assert not run_dir.exists() or [p.name for p in run_dir.iterdir()] == ["train_log.jsonl"]
