"""Real, small, deliberately broken files for the reliability tests (issue 9).

Everything is written into a test's ``tmp_path``: tiny VOC trees with real JPEG /
PNG files, truncated or fake images, bad XML, EXIF-rotated JPEGs, and the CLI
options of a run that trains in a few seconds on two CPU cores.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

import cv2
import numpy as np
import torch

# A run small enough for tests: 6 synthetic training images (3 steps per epoch), 1 test image.
TINY_RUN = [
    "--set", "model.init=random",
    "--set", "data.synthetic.train_images=6",
    "--set", "data.synthetic.test_images=1",
    "--set", "data.min_size=64",
    "--set", "data.max_size=96",
    "--set", "test.warmup_images=0",
    "--set", "test.recall_counts=10",
    "--set", "model.rpn_pre_nms_top_n_train=300",
    "--set", "model.rpn_post_nms_top_n_train=60",
    "--set", "model.roi_batch_size=32",
    "--set", "train.warmup_iters=2",
]


def image(h: int = 48, w: int = 64, seed: int = 0) -> np.ndarray:
    """A BGR uint8 picture with some structure (so JPEG has real scans to cut)."""
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 255, (h, w, 3), dtype=np.uint8)
    cv2.rectangle(img, (w // 4, h // 4), (w // 2, h // 2), (0, 0, 255), -1)
    return img


def jpeg_bytes(img: np.ndarray) -> bytes:
    ok, data = cv2.imencode(".jpg", img)
    assert ok
    return data.tobytes()


def exif_rotated_jpeg(img: np.ndarray, orientation: int = 6) -> bytes:
    """A JPEG of ``img`` with an EXIF APP1 segment whose Orientation tag is ``orientation``.

    6 means "rotate 90 degrees clockwise to display", as phones write for portrait shots.
    """
    ifd = struct.pack("<H", 1) + struct.pack("<HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack("<I", 0)
    tiff = b"II*\x00" + struct.pack("<I", 8) + ifd
    payload = b"Exif\x00\x00" + tiff
    app1 = b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload
    data = jpeg_bytes(img)
    return data[:2] + app1 + data[2:]


def voc_xml(filename: str, size: tuple[int, int], objects: list[tuple]) -> str:
    """VOC XML; ``objects`` are ``(name, xmin, ymin, xmax, ymax)`` in VOC's 1-based inclusive pixels."""
    body = "".join(
        f"<object><name>{n}</name><difficult>0</difficult><bndbox><xmin>{a}</xmin><ymin>{b}</ymin>"
        f"<xmax>{c}</xmax><ymax>{d}</ymax></bndbox></object>"
        for n, a, b, c, d in objects
    )
    return (f"<annotation><filename>{filename}</filename><size><width>{size[1]}</width>"
            f"<height>{size[0]}</height><depth>3</depth></size>{body}</annotation>")


def write_voc(root: Path, n_train: int = 4, n_test: int = 2) -> Path:
    """A clean VOC tree: ``t<i>`` in trainval, ``v<i>`` in test, 48x64 JPEGs, one cat and one dog each."""
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    splits = {"trainval": [f"t{i}" for i in range(n_train)], "test": [f"v{i}" for i in range(n_test)]}
    for k, image_id in enumerate(splits["trainval"] + splits["test"]):
        cv2.imwrite(str(root / "JPEGImages" / f"{image_id}.jpg"), image(seed=k))
        objects = [("cat", 17, 13, 32, 24), ("dog", 40, 20, 60, 44)]
        (root / "Annotations" / f"{image_id}.xml").write_text(voc_xml(f"{image_id}.jpg", (48, 64), objects))
    for split, ids in splits.items():
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return root


def add_voc_image(root: Path, image_id: str, data: bytes | None, objects: list[tuple] | None = None, *,
                  split: str = "trainval", filename: str | None = None, size: tuple[int, int] = (48, 64)) -> Path:
    """Add one image (raw file bytes; ``None``: no file) with its XML to ``split``; returns the image path."""
    filename = filename or f"{image_id}.jpg"
    objects = [("cat", 17, 13, 32, 24)] if objects is None else objects
    (root / "Annotations" / f"{image_id}.xml").write_text(voc_xml(filename, size, objects))
    path = root / "JPEGImages" / filename
    if data is not None:
        path.write_bytes(data)
    with open(root / "ImageSets" / "Main" / f"{split}.txt", "a") as f:
        f.write(image_id + "\n")
    return path


def voc_run(root: Path) -> list[str]:
    """CLI options of a tiny training run on the VOC tree at ``root``."""
    return ["--dataset", f"voc:{root}", "--epochs", "1", "--set", "data.min_size=48", "--set", "data.max_size=64",
            "--set", "test.warmup_images=0", "--set", "test.recall_counts=10", "--set", "train.warmup_iters=1"]


# ------------------------------------------------------------------ dataset layouts people have (issue 19)

CAT, DOG = ("cat", 17, 13, 32, 24), ("dog", 40, 20, 60, 44)  # VOC 1-based inclusive, in a 48x64 image


def write_voc_tree(root: Path, placement: dict[str, tuple[str, str]], *, objects: list[tuple] | None = None,
                   ext: str = ".jpg", filename: bool = True) -> Path:
    """VOC XML + JPEG pairs with no ImageSets: ``placement[stem] = (xml_folder, image_folder)`` below ``root``.

    Each image is 48x64 with a cat and a dog (``objects`` overrides); ``filename=False`` leaves
    ``<filename>`` out of the XML (the loader must then go by the XML's own name).
    """
    for k, (stem, (xml_dir, image_dir)) in enumerate(sorted(placement.items())):
        (root / xml_dir).mkdir(parents=True, exist_ok=True)
        (root / image_dir).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / image_dir / f"{stem}{ext}"), image(seed=k))
        xml = voc_xml(f"{stem}{ext}", (48, 64), [CAT, DOG] if objects is None else objects)
        if not filename:
            xml = xml.replace(f"<filename>{stem}{ext}</filename>", "")
        (root / xml_dir / f"{stem}.xml").write_text(xml)
    return root


def yolo_line(cls: int, box: tuple[float, float, float, float], size: tuple[int, int] = (48, 64)) -> str:
    """``class cx cy w h`` (normalised) of an absolute ``x1, y1, x2, y2`` box in an image of ``size`` (h, w)."""
    h, w = size
    x1, y1, x2, y2 = box
    return f"{cls} {(x1 + x2) / 2 / w:.6f} {(y1 + y2) / 2 / h:.6f} {(x2 - x1) / w:.6f} {(y2 - y1) / h:.6f}"


def write_yolo(root: Path, splits: dict[str, int], *, yaml: str | None = "list", classes_txt: bool = False,
               lines: list[str] | None = None) -> Path:
    """An ultralytics tree: ``images/<split>/<split><i>.jpg`` (48x64) and ``labels/<split>/<split><i>.txt``.

    Every label file holds ``lines`` (default: a cat, class 0, at 16,12,32,24 and a dog, class 1, at
    39,19,60,44). ``yaml``: ``"list"`` or ``"dict"`` form of ``names:`` in data.yaml, or ``None`` for no YAML.
    """
    lines = [yolo_line(0, (16, 12, 32, 24)), yolo_line(1, (39, 19, 60, 44))] if lines is None else lines
    k = 0
    for split, n in splits.items():
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "labels" / split).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            cv2.imwrite(str(root / "images" / split / f"{split}{i}.jpg"), image(seed=k))
            (root / "labels" / split / f"{split}{i}.txt").write_text("\n".join(lines) + "\n")
            k += 1
    folders = "".join(f"{s}: images/{s}\n" for s in splits)
    if yaml == "list":
        (root / "data.yaml").write_text(f"# written by a test\npath: .\n{folders}nc: 2\nnames: ['cat', \"dog\"]\n")
    elif yaml == "dict":
        (root / "data.yaml").write_text(f"path: .  # dataset root\n{folders}names:\n  0: cat\n  1: dog  # good dog\n")
    if classes_txt:
        (root / "classes.txt").write_text("cat\ndog\n")
    return root


def coco_json(path: Path, images: list[tuple[int, str]], boxes: dict[int, list[list[float]]],
              categories: tuple[tuple[int, str], ...] = ((1, "cat"), (2, "dog"))) -> Path:
    """A COCO instances file: 48x64 ``images`` ``(id, file_name)``; ``boxes[image_id]`` = ``[x, y, w, h, category]``."""
    anns = [{"image_id": image_id, "category_id": int(b[4]), "bbox": list(b[:4]), "area": b[2] * b[3], "iscrowd": 0}
            for image_id, bs in boxes.items() for b in bs]
    for k, ann in enumerate(anns, start=1):
        ann["id"] = k
    data = {"images": [{"id": i, "file_name": f, "width": 64, "height": 48} for i, f in images],
            "annotations": anns, "categories": [{"id": c, "name": n} for c, n in categories]}
    path.write_text(json.dumps(data))
    return path


# the cat and dog objects the writers above put in every image, in the harness frame (x1 = xmin - 1, x2 = xmax)
EXPECTED_BOXES = torch.tensor([[16.0, 12.0, 32.0, 24.0], [39.0, 19.0, 60.0, 44.0]])


def build_small(spec: str, split: str, **kw):
    """``build_dataset`` at the small sizes these files are written at (48 x 64)."""
    from harness.data import build_dataset

    return build_dataset(spec, split, min_size=48, max_size=64, **kw)
