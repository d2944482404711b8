"""Boxes drawn on images: the one drawing function of the report's gallery and of ``harness predict``.

Colours (seaborn's colour-blind-safe palette) say what a box is; missed ground
truth is also dashed, so the kinds differ without colour too:

- ``gt``: ground truth (the gallery's first panel), blue;
- ``tp``: a detection that matches a ground-truth box of its class at IoU >= 0.5, green;
- ``fp``: a detection that matches none, vermillion;
- ``missed``: a ground-truth box no shown detection matches, orange, dashed;
- ``det``: a detection with no ground truth to judge it (``harness predict``), sky blue.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

COLOURS = {"gt": (1, 115, 178), "tp": (2, 158, 115), "fp": (213, 94, 0), "missed": (222, 143, 5),
           "det": (86, 180, 233)}
KIND_NAMES = {"gt": "ground truth", "tp": "true positive", "fp": "false positive",
              "missed": "missed ground truth", "det": "detection"}


@dataclass(frozen=True)
class Box:
    """One box to draw: ``xyxy`` in the image's pixels, its label text and kind (a key of :data:`COLOURS`)."""

    xyxy: tuple[float, float, float, float]
    text: str
    kind: str


def _dashed_rectangle(draw: ImageDraw.ImageDraw, xyxy: tuple[float, ...], colour: tuple, width: int,
                      dash: int = 6) -> None:
    x1, y1, x2, y2 = xyxy
    for (ax, ay, bx, by) in ((x1, y1, x2, y1), (x2, y1, x2, y2), (x2, y2, x1, y2), (x1, y2, x1, y1)):
        length = max(abs(bx - ax), abs(by - ay))
        steps = max(1, int(length // dash))
        for i in range(0, steps, 2):
            t0, t1 = i / steps, min(1.0, (i + 1) / steps)
            draw.line([(ax + (bx - ax) * t0, ay + (by - ay) * t0), (ax + (bx - ax) * t1, ay + (by - ay) * t1)],
                      fill=colour, width=width)


def draw_boxes(image: Image.Image | np.ndarray, boxes: list[Box], *, scale: float = 1.0) -> Image.Image:
    """A copy of ``image`` (PIL, or RGB ``uint8 [H, W, 3]``) with ``boxes`` (multiplied by ``scale``)
    drawn and labelled; later boxes are drawn over earlier ones."""
    out = (Image.fromarray(image) if isinstance(image, np.ndarray) else image).convert("RGB").copy()
    draw = ImageDraw.Draw(out)
    font = ImageFont.load_default()
    width = max(1, round(min(out.size) / 160))
    for box in boxes:
        colour = COLOURS.get(box.kind, COLOURS["det"])
        xyxy = tuple(float(v) * scale for v in box.xyxy)
        if box.kind == "missed":
            _dashed_rectangle(draw, xyxy, colour, width)
        else:
            draw.rectangle(xyxy, outline=colour, width=width)
        if box.text:
            left, top, right, bottom = draw.textbbox((0, 0), box.text, font=font)
            tx, ty = xyxy[0], max(0.0, xyxy[1] - (bottom - top) - 3)
            draw.rectangle((tx, ty, tx + right - left + 3, ty + bottom - top + 3), fill=colour)
            draw.text((tx + 1, ty + 1 - top), box.text, fill=(255, 255, 255), font=font)
    return out


def jpeg_bytes(image: Image.Image, *, quality: int = 70) -> bytes:
    """``image`` as JPEG bytes (``quality`` ~70: small, boxes and labels still sharp enough)."""
    buf = io.BytesIO()
    image.convert("RGB").save(buf, format="JPEG", quality=quality, optimize=True)
    return buf.getvalue()


def thumbnail(pixels: np.ndarray, longer_side: int) -> tuple[Image.Image, float]:
    """RGB ``uint8 [H, W, 3]`` downscaled so its longer side is at most ``longer_side``; returns the
    image and the scale from original pixels to thumbnail pixels (never upscaled)."""
    image = Image.fromarray(pixels).convert("RGB")
    scale = min(1.0, longer_side / max(image.size))
    if scale < 1.0:
        size = (max(1, round(image.size[0] * scale)), max(1, round(image.size[1] * scale)))
        image = image.resize(size, Image.Resampling.LANCZOS)
    return image, scale
