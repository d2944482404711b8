"""What the folder-tree loaders (VOC XML found anywhere, YOLO labels) share.

- which files are images (by extension),
- split folders: ``train``, ``val`` (also ``valid``, ``validation``), ``test``,
- the seeded 80 / 20 split by file name used when a tree has neither split
  files nor split folders,
- the "file tree fingerprint" that lets a scan be cached until a file changes.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Sequence
from pathlib import Path, PurePath

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
# folder name (lower case) -> split name; "valid" is what Roboflow exports write
SPLIT_FOLDERS = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
TEST_PERCENT = 20


def is_image(path: PurePath) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def skipped(rel: PurePath) -> bool:
    """Hidden folders / files (``.ipynb_checkpoints``, ``.git``) and macOS zip debris are not data."""
    return any(part.startswith(".") or part == "__MACOSX" for part in rel.parts)


def tree_files(root: Path) -> list[Path]:
    """Every data file under ``root``, sorted (hidden files and folders left out)."""
    files = []
    for folder, dirs, names in os.walk(root, followlinks=False):
        dirs[:] = [d for d in dirs if not d.startswith(".") and d != "__MACOSX"]
        files += [Path(folder) / n for n in names if not n.startswith(".")]
    return sorted(files)


def fingerprint(files: Iterable[Path]) -> tuple[tuple[str, int, int], ...]:
    """``(path, mtime_ns, size)`` of each file: a scan cached under it is redone when any file changes."""
    out = []
    for path in files:
        try:
            st = path.stat()
        except OSError:
            continue
        out.append((str(path), st.st_mtime_ns, st.st_size))
    return tuple(out)


def folder_split(rel_folder: PurePath) -> str | None:
    """The split named by the first split folder in ``rel_folder`` (``valid`` -> ``val``), or ``None``."""
    for part in rel_folder.parts:
        split = SPLIT_FOLDERS.get(part.lower())
        if split is not None:
            return split
    return None


def hash_split(names: Sequence[str], seed: int) -> dict[str, str]:
    """``name -> "train" | "test"``: a deterministic 80 / 20 split of ``names`` (file names).

    The ``round(20 %)`` names (at least one when there are two or more) with the
    smallest ``sha256(f"{seed}:{name}")`` go to ``test``. Same names and seed:
    same split, on every machine; another ``seed`` (``--set data.split_seed``)
    draws another split.
    """
    n = len(names)
    n_test = 0 if n < 2 else max(1, round(n * TEST_PERCENT / 100))
    ranked = sorted(names, key=lambda name: hashlib.sha256(f"{seed}:{name}".encode()).hexdigest())
    test = set(ranked[:n_test])
    return {name: "test" if name in test else "train" for name in names}


def first_few(items: Sequence[object], n: int = 3) -> str:
    """``"a, b, c, ..."``: the first ``n`` items, for warnings about many files."""
    shown = ", ".join(str(i) for i in items[:n])
    return shown + (", ..." if len(items) > n else "")
