"""Drawing helpers shared by the generated datasets (:mod:`.synthetic`, :mod:`.synthetic_hard`).

Everything here draws with integer OpenCV rasterisation from a
``numpy.random.Generator`` that the caller owns, so a scene is a pure function
of the generator's state. The order in which each helper consumes the
generator is part of the datasets' definition: changing it changes every
generated pixel (``tests/data/test_data_synthetic.py`` pins ``synthetic``'s).
"""
from __future__ import annotations

import math
from collections.abc import Callable

import cv2
import numpy as np

# (rng) -> (label, y0, x0, mask bool [h, w]) : one candidate object, its top-left corner and silhouette
ObjectSampler = Callable[[np.random.Generator], tuple[int, int, int, np.ndarray]]
# (rng, label, h, w) -> float32 [h, w, 3] fill of the object's patch
TextureFn = Callable[[np.random.Generator, int, int, int], np.ndarray]


def hsv_colour(
    rng: np.random.Generator, hue: tuple[int, int], sat: tuple[int, int], val: tuple[int, int]
) -> np.ndarray:
    """One RGB colour, ``float32 [3]`` in 0..255, drawn uniformly from an HSV box (OpenCV ranges)."""
    hsv = np.array(
        [[[rng.integers(hue[0], hue[1] + 1), rng.integers(sat[0], sat[1] + 1), rng.integers(val[0], val[1] + 1)]]],
        dtype=np.uint8,
    )
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0].astype(np.float32)


def random_colour(rng: np.random.Generator) -> tuple[int, int, int]:
    """Any RGB colour, as the int tuple OpenCV drawing functions take."""
    return tuple(int(c) for c in rng.integers(0, 256, size=3))  # type: ignore[return-value]


MUTED = ((0, 179), (0, 90), (50, 210))  # HSV box of background colours: any hue, low saturation


def background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """``float32 [H, W, 3]``: a linear gradient between two muted colours, plus pixel noise."""
    c0, c1 = hsv_colour(rng, *MUTED), hsv_colour(rng, *MUTED)
    angle = rng.uniform(0.0, 2.0 * math.pi)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    ramp = xx * math.cos(angle) + yy * math.sin(angle)
    ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
    image = c0 + ramp[..., None] * (c1 - c0)
    image += rng.normal(0.0, rng.uniform(4.0, 12.0), size=image.shape).astype(np.float32)
    return image


def draw_lines(rng: np.random.Generator, image: np.ndarray, count: int) -> None:
    """Thin straight lines of random colours across the image (in place)."""
    height, width = image.shape[:2]
    for _ in range(count):
        p0 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        p1 = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        cv2.line(image, p0, p1, random_colour(rng), 1, cv2.LINE_AA)


def draw_distractors(
    rng: np.random.Generator,
    image: np.ndarray,
    size: int,
    *,
    blob_max: float,
    outline_min: float,
    blobs: tuple[int, int] = (3, 11),
    outlines: tuple[int, int] = (0, 3),
    lines: tuple[int, int] = (2, 7),
) -> None:
    """Clutter that is never a class: small blobs, thin object-sized outlines, lines (in place).

    Blobs are at most ``blob_max * size`` across; outlines have radii from
    ``outline_min * size`` to ``0.25 * size``. The count ranges are
    ``rng.integers`` bounds (high exclusive).
    """
    height, width = image.shape[:2]
    blob_px = max(3, int(blob_max * size))
    for _ in range(int(rng.integers(*blobs))):
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        axes = (int(rng.integers(1, blob_px // 2 + 1)), int(rng.integers(1, blob_px // 2 + 1)))
        cv2.ellipse(image, centre, axes, float(rng.uniform(0, 180)), 0, 360, random_colour(rng), -1, cv2.LINE_AA)
    # Hollow outlines at object scale force the detector to look at filled texture, not just edges.
    for _ in range(int(rng.integers(*outlines))):
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        radius = int(rng.integers(int(outline_min * size), int(0.25 * size)))
        if rng.random() < 0.5:
            cv2.circle(image, centre, radius, random_colour(rng), 1, cv2.LINE_AA)
        else:
            pts = rng.integers(-radius, radius + 1, size=(int(rng.integers(3, 6)), 2)) + np.array(centre)
            cv2.polylines(image, [pts.astype(np.int32)], True, random_colour(rng), 1, cv2.LINE_AA)
    draw_lines(rng, image, int(rng.integers(*lines)))


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one ``[4]`` box against ``[N, 4]`` boxes (xyxy) -> ``[N]``."""
    ix = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    iy = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = ix * iy
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / (area + areas - inter)


def object_sampler(
    size: int,
    height: int,
    width: int,
    *,
    num_classes: int,
    shape_mask: TextureFn,  # (rng, label, h, w) -> the class's mask
    side_range: tuple[float, float],
    sqrt_area_range: tuple[float, float],
    aspect_range: tuple[float, float],
    min_side_px: int = 0,
) -> ObjectSampler:
    """``sample(rng) -> (label, y0, x0, mask)`` for :func:`place_objects`: a class uniform in 1..K-1, a
    log-uniform sqrt(area) and aspect ratio (fractions of ``size``), sides clipped to ``side_range`` (at least
    ``min_side_px``) and to the image, a uniform position, and the class's mask."""
    side_lo, side_hi = max(min_side_px, int(round(side_range[0] * size))), int(round(side_range[1] * size))
    log_area = (math.log(sqrt_area_range[0] * size), math.log(sqrt_area_range[1] * size))
    log_aspect = (math.log(aspect_range[0]), math.log(aspect_range[1]))

    def sample(rng: np.random.Generator) -> tuple[int, int, int, np.ndarray]:
        label = int(rng.integers(1, num_classes))
        side, aspect = math.exp(rng.uniform(*log_area)), math.exp(rng.uniform(*log_aspect))
        h = int(np.clip(round(side * math.sqrt(aspect)), side_lo, min(side_hi, height)))
        w = int(np.clip(round(side / math.sqrt(aspect)), side_lo, min(side_hi, width)))
        y0, x0 = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
        return label, y0, x0, shape_mask(rng, label, h, w)

    return sample


def place_objects(
    rng: np.random.Generator,
    image: np.ndarray,
    wanted: int,
    sample: ObjectSampler,
    texture: TextureFn,
    *,
    max_pair_iou: float,
    min_visible: float,
    attempts_per_object: int = 40,
) -> tuple[list[np.ndarray], list[int]]:
    """Paint up to ``wanted`` objects into ``image`` (in place); returns their tight boxes and labels.

    Candidates come from ``sample``; one is rejected (a retry) if its box
    overlaps an earlier box by more than ``max_pair_iou`` IoU or if it would
    leave any earlier object with less than ``min_visible`` of its pixels
    visible. Later objects are drawn on top. A box is the full extent of the
    silhouette (hidden part included): mask columns ``a..b`` give ``x1 = a``,
    ``x2 = b + 1``.
    """
    height, width = image.shape[:2]
    owner = np.full((height, width), -1, dtype=np.int32)  # index of the object visible at each pixel
    areas: list[int] = []
    boxes: list[np.ndarray] = []
    labels: list[int] = []
    for _ in range(attempts_per_object * wanted):  # rejected candidates just cost a retry
        if len(labels) == wanted:
            break
        label, y0, x0, mask = sample(rng)
        h, w = mask.shape
        ys, xs = np.nonzero(mask)
        box = np.array([x0 + xs.min(), y0 + ys.min(), x0 + xs.max() + 1, y0 + ys.max() + 1], dtype=np.float32)
        if boxes and box_iou(box, np.stack(boxes)).max() > max_pair_iou:
            continue
        if areas:
            # Pixels of each earlier object that this one would cover, counted in one pass.
            covered = np.bincount(owner[y0 : y0 + h, x0 : x0 + w][mask] + 1, minlength=len(areas) + 1)[1:]
            visible = np.bincount(owner.ravel() + 1, minlength=len(areas) + 1)[1:]
            if ((visible - covered) < min_visible * np.asarray(areas)).any():
                continue
        fill = texture(rng, label, h, w)
        image[y0 : y0 + h, x0 : x0 + w][mask] = fill[mask]
        owner[y0 : y0 + h, x0 : x0 + w][mask] = len(areas)
        areas.append(int(mask.sum()))
        boxes.append(box)
        labels.append(label)
    return boxes, labels


def finish(rng: np.random.Generator, image: np.ndarray, boxes: list[np.ndarray], labels: list[int]
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Last pixel noise (sd 3), rounding to ``uint8``; boxes ``float32 [N, 4]``, labels ``int64 [N]``."""
    image += rng.normal(0.0, 3.0, size=image.shape).astype(np.float32)
    pixels = np.clip(np.rint(image), 0, 255).astype(np.uint8)
    box_array = np.stack(boxes).astype(np.float32) if boxes else np.zeros((0, 4), np.float32)
    return pixels, box_array, np.asarray(labels, dtype=np.int64)


# ---- silhouettes: uint8 {0, 1} masks spanning an h x w patch ------------------------------------------------


def ellipse_mask(h: int, w: int) -> np.ndarray:
    """The ellipse inscribed in the patch (4 fractional bits for sub-pixel centres)."""
    mask = np.zeros((h, w), dtype=np.uint8)
    centre = (int(round((w - 1) * 8)), int(round((h - 1) * 8)))
    axes = (int(round((w - 1) * 8)), int(round((h - 1) * 8)))
    cv2.ellipse(mask, centre, axes, 0, 0, 360, 1, -1, cv2.LINE_8, shift=4)
    return mask


def triangle_mask(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A triangle with one side along a patch edge and its apex on the opposite edge (4 orientations)."""
    mask = np.zeros((h, w), dtype=np.uint8)
    apex = float(rng.uniform(0.15, 0.85))
    up = np.array([[0, h - 1], [w - 1, h - 1], [apex * (w - 1), 0]])
    side = np.array([[0, 0], [0, h - 1], [w - 1, apex * (h - 1)]])
    pts = [up, np.array([[x, h - 1 - y] for x, y in up]), side, np.array([[w - 1 - x, y] for x, y in side])]
    cv2.fillPoly(mask, [np.round(pts[int(rng.integers(0, 4))]).astype(np.int32)], 1, cv2.LINE_8)
    return mask


def polygon_mask(h: int, w: int, unit_points: np.ndarray) -> np.ndarray:
    """A polygon given in unit patch coordinates (``[K, 2]`` x, y in 0..1), scaled to the patch and filled."""
    mask = np.zeros((h, w), dtype=np.uint8)
    pts = np.round(unit_points * np.array([w - 1, h - 1])).astype(np.int32)
    cv2.fillPoly(mask, [pts], 1, cv2.LINE_8)
    return mask


# ---- fills: float32 [h, w, 3] patterns of a base colour ------------------------------------------------------


def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return yy, xx


def shaded_spots(rng: np.random.Generator, base: np.ndarray, h: int, w: int) -> np.ndarray:
    """Radial shading (bright centre, darker rim) plus 2..5 dark spots near the centre."""
    yy, xx = _grid(h, w)
    r2 = ((xx - (w - 1) / 2) / (w / 2)) ** 2 + ((yy - (h - 1) / 2) / (h / 2)) ** 2
    tex = base * np.clip(1.1 - 0.5 * r2, 0.5, 1.1)[..., None]
    spot = tuple(float(c) for c in 0.45 * base)
    for _ in range(int(rng.integers(2, 6))):
        r = max(1, int(rng.uniform(0.06, 0.14) * min(h, w)))
        centre = (int(rng.uniform(0.3, 0.7) * w), int(rng.uniform(0.3, 0.7) * h))
        cv2.circle(tex, centre, r, spot, -1, cv2.LINE_8)
    return tex


def stripes(rng: np.random.Generator, base: np.ndarray, h: int, w: int,
            period: tuple[float, float] = (5.0, 10.0), dark: float = 0.45) -> np.ndarray:
    """Dark stripes (``dark * base``) at a random angle, period and phase."""
    yy, xx = _grid(h, w)
    p = float(rng.uniform(*period))
    angle = float(rng.uniform(0.0, math.pi))
    phase = (xx * math.cos(angle) + yy * math.sin(angle) + rng.uniform(0, p)) % p
    return np.where((phase < p / 2)[..., None], dark * base, base).astype(np.float32)


def checker(rng: np.random.Generator, base: np.ndarray, h: int, w: int,
            cell: tuple[int, int] = (3, 7), dark: float = 0.55) -> np.ndarray:
    """Checkerboard of ``base`` and ``dark * base``, square cells of ``rng.integers(*cell)`` pixels."""
    yy, xx = _grid(h, w)
    c = int(rng.integers(*cell))
    board = (((xx.astype(np.int32) // c) + (yy.astype(np.int32) // c)) % 2 == 1)[..., None]
    return np.where(board, dark * base, base).astype(np.float32)


def dots(rng: np.random.Generator, base: np.ndarray, h: int, w: int,
         period: tuple[float, float] = (5.0, 9.0), dark: float = 0.45) -> np.ndarray:
    """Dark round dots on a square lattice of random period, angle and offset (radius about period / 4)."""
    yy, xx = _grid(h, w)
    p = float(rng.uniform(*period))
    angle = float(rng.uniform(0.0, math.pi / 2))
    off_u, off_v = rng.uniform(0, p, size=2)
    u = (xx * math.cos(angle) + yy * math.sin(angle) + off_u) % p - p / 2
    v = (-xx * math.sin(angle) + yy * math.cos(angle) + off_v) % p - p / 2
    inside = (u * u + v * v) <= (0.28 * p) ** 2
    return np.where(inside[..., None], dark * base, base).astype(np.float32)
