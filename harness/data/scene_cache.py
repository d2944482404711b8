"""Generated scenes on disk: a checkout renders each ``synthetic`` / ``synthetic-hard`` image once.

The images are a pure function of the dataset config (its seed, sizes, object counts), the split, the index
and the generator code, so every run of a sweep or ``reproduce`` would otherwise draw the same pictures again
(``synthetic-hard``: about 35 ms an image; Fast R-CNN and R-CNN runs drew each twice, as the selective-search
worker processes draw their own copies to key the proposal cache: 14-20 s of a preset run, measured in the
README's synthetic-hard section). ``build_dataset`` gives the generated
datasets a folder ``<root>/<kind>-<key>/`` whose key hashes the config without its image counts (index ``i``
is the same picture whatever the split's size), the source of ``harness/data/`` and numpy's version: a change
to any of them is a new folder, never a stale picture. One ``.npz`` per scene (image, boxes, labels, exact;
about 330 KB for a ``synthetic-hard`` picture, 120 MB for the presets' 400);
written with :func:`harness.run.storage.atomic_write`, so concurrent writers (DDP ranks, proposal workers) and an
interrupted run leave whole files or none; a file that does not load is drawn again and rewritten.

``HARNESS_DATA_CACHE`` sets the root (default ``cache/data``, relative to the working directory);
``off`` turns the cache off. It is not part of the run config: it changes no number a run records.
"""
from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
import zipfile
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from harness.run.storage import atomic_write

ENV = "HARNESS_DATA_CACHE"
DEFAULT_ROOT = "cache/data"
OFF = ("", "off", "none", "0", "false")


def cache_root() -> Path | None:
    """The root from ``HARNESS_DATA_CACHE`` (default ``cache/data``); None when it says ``off``."""
    value = os.environ.get(ENV, DEFAULT_ROOT)
    return None if value.strip().lower() in OFF else Path(value)


@functools.cache
def code_digest() -> str:
    """SHA-256 over the data layer's source files and numpy's version (its random streams draw the scenes)."""
    h = hashlib.sha256(np.__version__.encode())
    for path in sorted(Path(__file__).parent.glob("*.py")):
        h.update(path.name.encode())
        h.update(path.read_bytes())
    return h.hexdigest()


def scene_dir(root: Path, kind: str, config: Any) -> Path:
    """``<root>/<kind>-<key>``: ``config`` (a dataclass) without its ``*_images`` counts, and the code."""
    fields = {k: v for k, v in dataclasses.asdict(config).items() if not k.endswith("_images")}
    text = json.dumps([kind, fields, code_digest()], sort_keys=True, default=str)
    return root / f"{kind}-{hashlib.sha256(text.encode()).hexdigest()[:16]}"


def load(path: Path, scene_type: type[NamedTuple]) -> Any | None:
    """The scene stored at ``path``; None when there is none or it does not load (a partial or foreign file)."""
    try:
        with np.load(path) as data:
            return scene_type(*(data[name] for name in scene_type._fields))
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None


def save(path: Path, scene: NamedTuple) -> None:
    """Store ``scene`` at ``path`` (the project's atomic writer); a folder that cannot be written leaves the run
    as it was."""
    try:  # uncompressed: the noisy backgrounds barely compress (-10 %)
        atomic_write(path, lambda f: np.savez(f, **scene._asdict()), what="scene cache entry")
    except OSError:  # StorageError included
        pass
