"""On-disk cache of selective-search proposals: one self-checking file per image.

Selective search costs 0.1-2 s per image, so each image is searched once and
the boxes are kept. This is a *proposal* cache, shared by Fast R-CNN and
R-CNN; it is not a feature cache (Fast R-CNN needs none, section 1.2).

Key: the SHA-256 of the decoded image (shape and pixels) inside a folder named
after every parameter that changes the result (mode, resize, minimum box
size, OpenCV version; :meth:`SelectiveSearchParams.slug`). The number of boxes
kept is not one of them: selective search ranks its boxes and keeps the first
N, so the cache stores the first ``max(N, SHARED_TOP_N)`` and each reader keeps
its N. Runs that differ only in ``proposals.max_proposals`` (the proposal-count
rows: 100, 300, 1000, 2000) search each image once, not once per count.

Entry layout (little endian)::

    magic "RCNNPRP1" | payload length u64 | SHA-256 of payload (32 bytes) | payload
    payload = JSON metadata line ("\\n"-terminated) | float32 boxes [P, 4] xyxy

Entries are written to a temporary file and renamed into place (atomic on
POSIX), so a reader sees a whole entry or none; an entry torn or corrupted
some other way fails the length, checksum or metadata check and is
recomputed, never used.

Two processes filling one cache (two ``harness proposals``, or a run and a
``proposals`` command) never compute the same entry twice: an entry is computed
under an exclusive ``flock`` on its claim file ``.<digest>.prop.lock`` (beside
the entry; removed when the entry is stored). The kernel drops the lock of a
process that dies, ``kill -9`` included, so a claim is never stale; a claim file
left by a killed process is reused by the next claimant and then removed.
"""
from __future__ import annotations

import hashlib
import json
import logging
import struct
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from detectors.selective_search import SelectiveSearchParams
from harness.run.storage import atomic_write_bytes, claim_file

log = logging.getLogger(__name__)

MAGIC = b"RCNNPRP1"
HEADER = struct.Struct("<8sQ32s")  # magic, payload length, sha256(payload)
SUFFIX = ".prop"
SHARED_TOP_N = 2000  # the cache stores this many boxes (or N, if larger); a reader keeps its own N


class CorruptEntryError(ValueError):
    """A cache file that is torn, truncated, or does not belong where it is."""


@dataclass
class CacheEntry:
    """Proposals of one image.

    Attributes:
        boxes: ``float32 [P, 4]`` xyxy in the original image frame, best first.
        compute_s: seconds selective search took on this image (one thread), when computed.
        image_size: ``(H, W)`` of the image searched.
    """

    boxes: Tensor
    compute_s: float
    image_size: tuple[int, int]


def image_digest(image: np.ndarray) -> str:
    """SHA-256 hex of an image's shape, dtype and pixels (the content part of the key)."""
    h = hashlib.sha256(f"{image.shape}|{image.dtype}|".encode())
    h.update(np.ascontiguousarray(image).data)
    return h.hexdigest()


def encode_entry(entry: CacheEntry, fingerprint: dict[str, object]) -> bytes:
    """Header + payload bytes of ``entry`` (see the module docstring)."""
    boxes = entry.boxes.detach().cpu().to(torch.float32).contiguous().numpy().astype("<f4")
    meta = {
        "num": int(boxes.shape[0]),
        "compute_s": float(entry.compute_s),
        "image_size": [int(x) for x in entry.image_size],
        "params": fingerprint,
    }
    payload = json.dumps(meta, sort_keys=True).encode() + b"\n" + boxes.tobytes()
    return HEADER.pack(MAGIC, len(payload), hashlib.sha256(payload).digest()) + payload


def decode_entry(data: bytes, fingerprint: dict[str, object]) -> CacheEntry:
    """Inverse of :func:`encode_entry`; raises :class:`CorruptEntryError` on any mismatch."""
    if len(data) < HEADER.size:
        raise CorruptEntryError(f"{len(data)} bytes, shorter than the {HEADER.size}-byte header")
    magic, length, checksum = HEADER.unpack_from(data)
    payload = data[HEADER.size :]
    if magic != MAGIC:
        raise CorruptEntryError("bad magic")
    if len(payload) != length:
        raise CorruptEntryError(f"payload is {len(payload)} bytes, header says {length} (torn write?)")
    if hashlib.sha256(payload).digest() != checksum:
        raise CorruptEntryError("checksum mismatch")
    line, sep, raw = payload.partition(b"\n")
    try:
        meta = json.loads(line)
        num, compute_s, size = int(meta["num"]), float(meta["compute_s"]), tuple(meta["image_size"])
    except (ValueError, KeyError, TypeError) as err:
        raise CorruptEntryError(f"bad metadata: {err}") from None
    if not sep or len(raw) != 16 * num:
        raise CorruptEntryError(f"{len(raw)} box bytes for {num} boxes")
    if meta.get("params") != fingerprint:
        raise CorruptEntryError("entry was computed with other parameters")
    boxes = torch.from_numpy(np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(num, 4))
    return CacheEntry(boxes, compute_s, (int(size[0]), int(size[1])))


class ProposalCache:
    """Folder of cache entries for one parameter set.

    Args:
        root: cache root (config ``proposals.cache_dir``, default ``cache/proposals``).
        params: selective-search parameters of the reader; ``params.max_proposals`` is the N it keeps
            (``keep``), while ``self.params`` (searched and stored, naming the sub-folder) holds
            ``max(N, SHARED_TOP_N)``.
    """

    def __init__(self, root: str | Path, params: SelectiveSearchParams) -> None:
        self.root, self.keep = Path(root), params.max_proposals
        self.params = replace(params, max_proposals=max(params.max_proposals, SHARED_TOP_N))
        self.dir = self.root / self.params.slug()
        self.fingerprint = json.loads(json.dumps(self.params.fingerprint()))  # JSON-normalised, as stored

    def kept(self, entry: CacheEntry) -> CacheEntry:
        """``entry`` with its first ``keep`` boxes (what a search with the reader's N returns)."""
        if entry.boxes.shape[0] <= self.keep:
            return entry
        return CacheEntry(entry.boxes[: self.keep].contiguous(), entry.compute_s, entry.image_size)

    def path(self, digest: str) -> Path:
        """``<dir>/<first two hex digits>/<digest>.prop`` (keeps folders small)."""
        return self.dir / digest[:2] / f"{digest}{SUFFIX}"

    def load(self, digest: str) -> CacheEntry | None:
        """The entry for ``digest`` (its first ``keep`` boxes); ``None`` when missing or corrupt (logged)."""
        path = self.path(digest)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        try:
            return self.kept(decode_entry(data, self.fingerprint))
        except CorruptEntryError as err:
            log.warning("proposal cache entry %s is unusable (%s); recomputing it", path, err)
            return None

    def store(self, digest: str, entry: CacheEntry) -> int:
        """Write ``entry`` atomically; returns its size in bytes.

        The temporary name is unique per writer (:func:`atomic_write`), so two processes
        computing the same image never interleave; the last rename wins with a whole entry.
        """
        return atomic_write_bytes(self.path(digest), encode_entry(entry, self.fingerprint),
                                  what="proposal cache entry")

    def claim_path(self, digest: str) -> Path:
        path = self.path(digest)
        return path.with_name(f".{path.name}.lock")

    @contextmanager
    def claim(self, digest: str, *, wait: bool = True) -> Iterator[bool]:
        """Hold the claim on ``digest``'s entry (the right to compute it) inside the ``with``.

        Yields ``True`` once the claim is ours; with ``wait=False`` yields ``False`` at once when
        another live process holds it (it is computing that entry now). The claim file is removed
        on the way out, while still held.
        """
        with claim_file(self.claim_path(digest), wait=wait) as mine:
            yield mine

    def usage(self) -> tuple[int, int]:
        """``(bytes, entries)`` under this parameter set's folder."""
        total = count = 0
        if self.dir.is_dir():
            for path in self.dir.rglob(f"*{SUFFIX}"):
                total += path.stat().st_size
                count += 1
        return total, count
