"""Writing result files so that a crash or a full disk never leaves a corrupt one.

:func:`atomic_write` writes to a temporary file in the target's folder, flushes
it to disk, then renames it over the target: readers see the old file or the
new one, never half of one. If anything goes wrong (``ENOSPC``, Ctrl-C, an
exception in the writer) the temporary file is removed and the old target is
untouched. A ``kill -9`` can still leave ``.<name>.<pid>.<random>.tmp`` behind; it is
never read (:func:`stale_temps` finds such files for clean-up). This is the one
atomic writer of the project: checkpoints, weights, detections, proposal and feature
cache entries all go through it (:func:`atomic_torch_save` for ``torch.save``).
"""
from __future__ import annotations

import errno
import glob
import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO

try:
    import fcntl
except ImportError:  # not POSIX: no locks
    fcntl = None  # type: ignore[assignment]


class StorageError(OSError):
    """A result file could not be written (disk full, read-only, quota); nothing partial was kept.

    The message names the file and the cause and is meant for the user as is.
    """

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        self.errno = code


def storage_error(path: Path, what: str, err: OSError) -> StorageError:
    """A :class:`StorageError` naming ``path``, with a hint for the common causes."""
    reason = err.strerror or str(err)
    hint = {
        errno.ENOSPC: " (the disk is full: free space, or point --results at another disk)",
        errno.EDQUOT: " (disk quota exceeded)",
        errno.EROFS: " (read-only file system: point --results elsewhere)",
        errno.EACCES: " (permission denied: point --results at a writable folder)",
    }.get(err.errno or 0, "")
    return StorageError(f"cannot write {what} {path}: {reason}{hint}", err.errno)


def temp_path(path: Path) -> Path:
    """A temporary file for ``path``: same folder (so the rename is atomic), a name unique to this writer
    (two processes writing the same file never write into one temporary file)."""
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def stale_temps(path: Path) -> list[Path]:
    """Temporary files of ``path`` left by writers killed mid-write (and the older ``<name>.tmp`` form)."""
    legacy = path.with_name(path.name + ".tmp")
    return sorted(path.parent.glob(f".{glob.escape(path.name)}.*.tmp")) + ([legacy] if legacy.exists() else [])


def atomic_torch_save(path: Path, obj: Any, *, what: str = "file") -> int:
    """:func:`atomic_write` of ``torch.save(obj)``; returns the size in bytes.

    Saved to the open file, not to the temporary file's path: ``torch.save`` to a path names the zip
    archive's root folder after it, so the temporary name (with its pid) went into the bytes and equal
    tensors got another SHA-256 on every write. To a file object the root is always ``archive``: the bytes
    depend on ``obj`` alone.
    """
    import torch  # here: the rest of this module needs no torch

    return atomic_write(path, lambda f: torch.save(obj, f), what=what)


def atomic_write_bytes(path: Path, data: bytes, *, what: str = "file") -> int:
    """:func:`atomic_write` of ready bytes."""
    return atomic_write(path, lambda f: f.write(data), what=what)


def atomic_write(path: Path, write: Callable[[BinaryIO], None], *, what: str = "file") -> int:
    """Create or replace ``path`` with what ``write(file)`` writes; returns the size in bytes.

    Raises:
        StorageError: an ``OSError`` while writing, flushing or renaming (the old
            ``path`` is kept, the temporary file removed).
    """
    path = Path(path)
    tmp = temp_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            # without fsync a power cut after the rename could leave an empty file under the good name
            os.fsync(f.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException as err:  # also Ctrl-C / SIGTERM in the middle of a write
        tmp.unlink(missing_ok=True)
        cause = _os_error_in(err)
        if cause is not None:
            raise storage_error(path, what, cause) from err
        raise
    return path.stat().st_size


def _os_error_in(err: BaseException) -> OSError | None:
    """The ``OSError`` behind ``err``, if any: ``torch.save`` re-raises a failed
    ``write`` as a ``RuntimeError`` whose ``__context__`` is the ``OSError``."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        if isinstance(current, StorageError):
            return None  # already explained
        if isinstance(current, OSError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def _fsync_dir(folder: Path) -> None:
    """Persist the rename itself (best effort: some file systems refuse fsync on folders)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextmanager
def claim_file(path: Path, *, wait: bool = False, remove: bool = True) -> Iterator[bool]:
    """An exclusive ``flock`` on ``path`` inside the ``with``; yields whether it is ours.

    ``wait=False`` yields ``False`` at once when another live process holds it. The kernel drops a
    lock when its process dies (``kill -9`` included), so a claim is never left stale. ``remove``:
    unlink the file on the way out, while still held. The holder's pid is written into the file,
    for a person looking. Without ``fcntl`` (not POSIX) there are no locks: a single writer is assumed.
    """
    if fcntl is None:
        yield True
        return
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            yield False
            return
        try:  # the previous holder removed the file after we opened it: our lock guards nothing
            current = os.stat(path).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(fd).st_ino:
            break
        os.close(fd)
    try:
        os.write(fd, f"{os.getpid()}\n".encode())
        yield True
    finally:
        if remove:
            path.unlink(missing_ok=True)
        os.close(fd)
