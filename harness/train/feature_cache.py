"""R-CNN's on-disk feature cache (section 2.3: features of every region are "cached to disk").

One entry per training image: a raw ``.feat`` file holding ``[n, D]`` values
(float32, or float16 to halve the bytes), exactly ``n * D * bytes`` long, and a
``.json`` sidecar with its shape, dtype, byte size, CRC-32 and the regions'
boxes. Entries are streamed one image at a time (RAM does not grow with the
dataset) and read back with ``numpy.fromfile``.

Robustness:
- **keyed**: the folder name is a digest of everything the features depend on
  (checkpoint hash of the fine-tuned network, layer, dtype, crop size and
  padding, proposal parameters, dataset): a changed input never reads stale
  features, an unchanged one reuses them across runs;
- **atomic**: each file is written to a temporary name in the same folder and
  renamed; the sidecar is written last, so an entry exists only once complete;
- **checked**: an entry whose size or CRC does not match its sidecar (a torn or
  corrupted write) counts as missing and is recomputed;
- **space**: :meth:`FeatureCache.check_space` compares the bytes about to be
  written with ``shutil.disk_usage`` and fails before writing, stating both.

Shape shorthand: n = regions of one image, D = feature size.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from harness.run.storage import atomic_write_bytes

DTYPES = {"float32": np.float32, "float16": np.float16}
FORMAT_VERSION = 1


class FeatureCacheError(RuntimeError):
    """The cache cannot be written (no space) or an entry cannot be read."""


def state_dict_digest(module: nn.Module) -> str:
    """SHA-256 of a module's state dict (names, dtypes, shapes and values): the checkpoint hash."""
    h = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        # (...) -> flat bytes; reshape(-1) first because a 0-d tensor cannot be viewed as bytes
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def key_digest(key: dict[str, Any]) -> str:
    """Stable digest of a JSON-able key (sorted keys)."""
    return hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]


class FeatureCache:
    """One layer's features of every region of every image, one entry per image.

    Args:
        root: parent folder (e.g. ``cache/features``).
        key: what the features depend on; its digest names the folder, and it is
            written there as ``key.json`` for people to read.
        name: sub-folder for this kind of entry (``fc7``, ``bbox_pool5``, ...).
        dim: D.
        dtype: ``float32`` or ``float16``.
    """

    def __init__(self, root: str | Path, key: dict[str, Any], *, name: str, dim: int, dtype: str = "float32") -> None:
        if dtype not in DTYPES:
            raise ValueError(f"cache dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        self.key = {**key, "format": FORMAT_VERSION}
        self.dir = Path(root) / key_digest(self.key) / name
        self.dim, self.dtype = int(dim), dtype
        self.np_dtype = np.dtype(DTYPES[dtype])
        self.bytes_written = 0

    @property
    def bytes_per_region(self) -> int:
        return self.dim * self.np_dtype.itemsize

    def _paths(self, index: int) -> tuple[Path, Path]:
        stem = self.dir / f"{index:07d}"
        return stem.with_suffix(".feat"), stem.with_suffix(".json")

    def prepare(self) -> None:
        """Create the folder and its ``key.json``."""
        self.dir.mkdir(parents=True, exist_ok=True)
        key_file = self.dir.parent / "key.json"
        if not key_file.exists():
            atomic_write_bytes(key_file, json.dumps(self.key, indent=1, sort_keys=True, default=str).encode(),
                               what="feature cache key")

    def check_space(self, regions: int) -> int:
        """Fail unless ``regions`` more entries' bytes fit on the cache's disk; returns the bytes needed.

        Raises:
            FeatureCacheError: stating the bytes needed and free.
        """
        needed = int(regions) * self.bytes_per_region
        self.prepare()
        free = shutil.disk_usage(self.dir).free
        if needed > free:
            raise FeatureCacheError(
                f"not enough disk space for the R-CNN feature cache in {self.dir}: {needed:,} bytes needed "
                f"({regions:,} regions x {self.dim} values x {self.np_dtype.itemsize} bytes, {self.dtype}), "
                f"{free:,} bytes free"
            )
        return needed

    def _load(self, index: int) -> tuple[bytearray, dict[str, Any]] | None:
        feat, side = self._paths(index)
        try:
            meta = json.loads(side.read_text())
            data = bytearray(feat.read_bytes())
        except (OSError, ValueError):
            return None
        expected = meta.get("n", -1) * meta.get("dim", -1) * self.np_dtype.itemsize
        if meta.get("dtype") != self.dtype or meta.get("dim") != self.dim or len(data) != expected:
            return None
        if meta.get("bytes") != expected or zlib.crc32(data) != meta.get("crc32"):
            return None
        return data, meta

    def meta(self, index: int) -> dict[str, Any] | None:
        """The sidecar of a *valid* entry, or None (missing, torn or corrupted)."""
        loaded = self._load(index)
        return None if loaded is None else loaded[1]

    def write(self, index: int, features: Tensor, info: dict[str, Any]) -> int:
        """Store ``features [n, D]`` and JSON-able ``info`` for image ``index``; returns bytes written.

        Raises:
            FeatureCacheError: the disk has no room for this entry.
        """
        if features.ndim != 2 or features.shape[1] != self.dim:
            raise ValueError(f"expected features [n, {self.dim}], got {tuple(features.shape)}")
        data = features.detach().cpu().numpy().astype(self.np_dtype, copy=False).tobytes()
        self.check_space(features.shape[0])
        feat, side = self._paths(index)
        atomic_write_bytes(feat, data, what="feature cache entry")
        meta = {**info, "n": int(features.shape[0]), "dim": self.dim, "dtype": self.dtype,
                "bytes": len(data), "crc32": zlib.crc32(data)}
        atomic_write_bytes(side, json.dumps(meta).encode(), what="feature cache sidecar")
        self.bytes_written += len(data)
        return len(data)

    def read(self, index: int) -> tuple[Tensor, dict[str, Any]]:
        """Features ``float32 [n, D]`` and the sidecar of image ``index``.

        Raises:
            FeatureCacheError: the entry is missing or fails its size / CRC check.
        """
        loaded = self._load(index)
        if loaded is None:
            raise FeatureCacheError(f"feature cache entry {index} in {self.dir} is missing or corrupted")
        data, meta = loaded
        values = np.frombuffer(data, dtype=self.np_dtype).reshape(meta["n"], self.dim)
        return torch.from_numpy(values.astype(np.float32, copy=False)), meta

    def entry_bytes(self, index: int) -> int:
        """Bytes of the ``.feat`` file of an entry (0 when absent)."""
        feat, _ = self._paths(index)
        return feat.stat().st_size if feat.exists() else 0
