"""Reading images of user datasets: one decoder and one set of rules for VOC and COCO.

What :func:`read_rgb` returns for the files users actually have:

- 8-bit RGB JPEG / PNG / BMP / TIFF: as stored;
- grayscale: three equal channels;
- RGBA: the alpha channel is dropped (the colour channels are used as stored,
  not composited onto a background);
- 16-bit: reduced to 8 bits by OpenCV (``value // 256``), so a 16-bit image and
  its 8-bit export give the same input;
- EXIF-rotated JPEG: the orientation tag is *ignored*
  (``cv2.IMREAD_IGNORE_ORIENTATION``); pixels come back in the stored grid,
  which is the grid VOC ``<size>`` and COCO ``width`` / ``height`` (and PIL,
  pycocotools and torchvision readers) refer to. OpenCV would otherwise rotate
  the image and every box would land in the wrong place. If an annotation was
  made on the rotated view, its size is the stored one swapped, and
  :func:`check_size` says so in its warning.

Anything else is a :class:`~harness.data.errors.DatasetError` naming the file:
missing, empty, unreadable, not an image, or a truncated JPEG (some libjpeg
builds decode those "successfully" with the missing part grey, which would
silently train on wrong pixels).
"""
from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np

from harness.data.errors import DatasetError

log = logging.getLogger(__name__)

_SOI, _EOI, _SOS = b"\xff\xd8", b"\xff\xd9", 0xDA
_DECODE_FLAGS = cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION


def jpeg_is_complete(data: bytes) -> bool:
    """Whether a JPEG byte string has its end-of-image marker after the first scan.

    The marker segments before the first scan (EXIF, with a thumbnail that has an
    end marker of its own) are skipped by their lengths; after the scan starts, a
    0xFF byte in the compressed data is always followed by 0x00 or a restart
    marker, so ``FF D9`` there can only be the real end. Data appended after the
    end marker (e.g. a phone's "motion photo" video) is allowed.
    """
    pos = 2
    while pos + 4 <= len(data):
        if data[pos] != 0xFF:
            return False  # not a marker where one must be: corrupt header
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker == _SOS:
            return data.find(_EOI, pos) >= 0
        pos += 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
    return False


def read_rgb(path: Path, *, dataset: str) -> np.ndarray:
    """RGB ``uint8 [H, W, 3]`` of the image at ``path`` (see the module docstring for the rules).

    Raises:
        DatasetError: ``"<dataset>: <what is wrong> <path>"``, one line.
    """
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise DatasetError(f"{dataset}: image file {path} is missing") from None
    except OSError as err:
        raise DatasetError(f"{dataset}: cannot read image {path}: {err.strerror or err}") from None
    if not data:
        raise DatasetError(f"{dataset}: image file {path} is empty")
    if data.startswith(_SOI) and not jpeg_is_complete(data):
        raise DatasetError(f"{dataset}: image {path} is a truncated or corrupt JPEG (no end-of-image marker)")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), _DECODE_FLAGS)  # always 8-bit, 3 channels (BGR)
    if image is None:
        raise DatasetError(f"{dataset}: cannot decode image {path} (corrupt, or not an image file)")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def image_header(path: Path, *, dataset: str) -> tuple[int, int, int]:
    """``(h, w, exif_orientation)`` from the file header (no decoding of the pixels).

    ``h, w`` is the stored pixel grid, the one :func:`read_rgb` returns (EXIF
    orientation ignored); ``exif_orientation`` is the EXIF tag (1: none). A
    header Pillow cannot read falls back to :func:`read_rgb`, whose error names the file.
    """
    from PIL import Image, UnidentifiedImageError  # Pillow comes with torchvision

    try:
        with Image.open(path) as img:
            width, height = img.size
            orientation = int(img.getexif().get(0x0112, 1) or 1)
        if width > 0 and height > 0:
            return int(height), int(width), orientation
    except (OSError, UnidentifiedImageError, ValueError, TypeError, Image.DecompressionBombError):
        pass
    height, width = read_rgb(path, dataset=dataset).shape[:2]
    return height, width, 1


def check_size(shape: tuple[int, ...], expected: tuple[int, int] | None, path: Path, *, dataset: str,
               source: str) -> None:
    """Warn when the decoded ``(h, w)`` differs from the size ``source`` (the annotation) states."""
    if expected is None or tuple(shape[:2]) == tuple(expected):
        return
    h, w = shape[:2]
    hint = (" (width and height swapped: an EXIF-rotated photo annotated in its rotated view? "
            "the harness uses the stored pixel grid)") if (h, w) == (expected[1], expected[0]) else ""
    log.warning("%s: %s is %dx%d but %s says %dx%d; boxes may be misplaced%s",
                dataset, path, w, h, source, expected[1], expected[0], hint)


def require_files(paths: Sequence[Path], *, dataset: str) -> None:
    """Fail before any work if image files listed by the annotations are missing.

    A benchmark evaluated on fewer images than listed would be a different
    benchmark, so missing files are an error, not a skip; the message says how many.
    """
    missing = [p for p in paths if not p.is_file()]
    if missing:
        more = f" (and {len(missing) - 1} more of the {len(paths)} listed)" if len(missing) > 1 else ""
        raise DatasetError(
            f"{dataset}: image file {missing[0]} is missing{more}; "
            "restore it or remove its id from the split (or its annotation file)"
        )


def require_image_files(dataset: object) -> None:
    """:func:`require_files` for every image of a VOC / COCO dataset (generated datasets have no files).

    Called when a run builds its datasets and by ``harness datasets``, not by the
    dataset constructors, so annotation-only uses (statistics, ground truth for
    the evaluator) work without the pixels.
    """
    image_path = getattr(dataset, "image_path", None)
    if image_path is not None:
        require_files([image_path(i) for i in range(len(dataset))], dataset=str(getattr(dataset, "name", "")))  # type: ignore[arg-type]


def unreadable_images(paths: Sequence[Path], *, dataset: str) -> list[str]:
    """One message per image that :func:`read_rgb` refuses (decodes every file: slow on big sets)."""
    problems = []
    for path in paths:
        try:
            read_rgb(path, dataset=dataset)
        except DatasetError as err:
            problems.append(str(err))
    return problems
