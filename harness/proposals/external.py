"""Proposals from a file: EdgeBoxes, MCG, or any other method's output.

File format (JSON, UTF-8)::

    {
      "format": "rcnn-harness-proposals",
      "version": 1,
      "images": {
        "<image key>": {"boxes": [[x1, y1, x2, y2], ...], "scores": [s1, ...]},
        ...
      }
    }

- ``boxes``: absolute pixels of the image *on disk*, ``x1, y1, x2, y2``
  (0-based, continuous: a VOC box ``[1, 1, 10, 10]`` is ``[0, 0, 10, 10]``).
- ``scores`` (optional): higher is better; boxes are then used best first.
  Without scores the file's order is taken as the ranking.
- ``<image key>``: VOC: the image id of the split file (``"000005"``); COCO: the
  image id (``"397133"``); synthetic: ``"<split>/<index>"`` (``"test/3"``). The
  image's file name (``"000005.jpg"``) is accepted too.

Every image the run uses must have an entry (an empty ``boxes`` list is fine).
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchvision.ops import clip_boxes_to_image

from harness.config import ConfigError
from harness.data.base import DetectionDataset

FORMAT, VERSION = "rcnn-harness-proposals", 1


class ProposalFileError(ConfigError):
    """An external proposal file that is missing, malformed, or lacks an image."""


def image_keys(dataset: DetectionDataset, index: int) -> list[str]:
    """Keys an external file may use for image ``index`` of ``dataset``, preferred first."""
    keys = []
    if hasattr(dataset, "ids"):  # VOC: id from the split file
        keys.append(str(dataset.ids[index]))
    elif hasattr(dataset, "image_ids"):  # COCO: image id
        keys.append(str(dataset.image_ids[index]))
    else:  # synthetic
        keys.append(f"{getattr(dataset, 'split', 'all')}/{index}")
    if hasattr(dataset, "image_path"):
        keys.append(Path(dataset.image_path(index)).name)
    return keys


def _boxes(entry: Any, key: str, path: Path) -> np.ndarray:
    """One image's boxes, ``float32 [P, 4]``, sorted by descending score when scores are given."""
    if not isinstance(entry, Mapping) or "boxes" not in entry:
        raise ProposalFileError(f"{path}: entry {key!r} must be an object with a 'boxes' list")
    try:
        boxes = np.asarray(entry["boxes"], dtype=np.float32).reshape(-1, 4)
    except (TypeError, ValueError):
        raise ProposalFileError(f"{path}: entry {key!r}: 'boxes' must be a list of [x1, y1, x2, y2]") from None
    bad = np.flatnonzero(~np.isfinite(boxes).all(axis=1))
    if bad.size:
        raise ProposalFileError(f"{path}: image {key!r}: {bad.size} boxes with a NaN or infinite coordinate, "
                                f"e.g. box {int(bad[0])} = {boxes[bad[0]].tolist()}")
    if (boxes[:, 2:] < boxes[:, :2]).any():
        raise ProposalFileError(f"{path}: image {key!r} has boxes with x2 < x1 or y2 < y1")
    if entry.get("scores") is not None:
        try:
            scores = np.asarray(entry["scores"], dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            raise ProposalFileError(f"{path}: image {key!r}: 'scores' must be a list of numbers") from None
        bad = np.flatnonzero(~np.isfinite(scores))
        if bad.size:
            raise ProposalFileError(f"{path}: image {key!r}: {bad.size} scores are NaN or infinite, "
                                    f"e.g. score {int(bad[0])} = {scores[bad[0]]}")
        if scores.shape[0] != boxes.shape[0]:
            raise ProposalFileError(f"{path}: entry {key!r} has {boxes.shape[0]} boxes but {scores.shape[0]} scores")
        boxes = boxes[np.argsort(-scores, kind="stable")]
    return boxes


def load_proposal_file(path: str | Path) -> dict[str, np.ndarray]:
    """Read and check a proposal file; returns image key -> ``float32 [P, 4]`` best first."""
    path = Path(path)
    if not path.is_file():
        raise ProposalFileError(f"proposal file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise ProposalFileError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(data, Mapping) or data.get("format") != FORMAT or not isinstance(data.get("images"), Mapping):
        raise ProposalFileError(f"{path}: expected {{\"format\": \"{FORMAT}\", \"version\": 1, \"images\": {{...}}}}")
    if data.get("version") != VERSION:
        raise ProposalFileError(f"{path}: format version {data.get('version')!r} is not supported (expected {VERSION})")
    return {str(k): _boxes(v, str(k), path) for k, v in data["images"].items()}


def save_proposal_file(
    path: str | Path, boxes: Mapping[str, Tensor | np.ndarray], scores: Mapping[str, Any] | None = None
) -> None:
    """Write ``{key: [P, 4] boxes}`` (and optional ``{key: [P] scores}``) in the format above."""
    images = {}
    for key, b in boxes.items():
        entry: dict[str, Any] = {"boxes": np.asarray(b, dtype=np.float64).reshape(-1, 4).tolist()}
        if scores is not None and key in scores:
            entry["scores"] = np.asarray(scores[key], dtype=np.float64).reshape(-1).tolist()
        images[str(key)] = entry
    Path(path).write_text(json.dumps({"format": FORMAT, "version": VERSION, "images": images}), encoding="utf-8")


class FileProposals:
    """Dataset hook ``provider(index, image) -> float32 [P, 4]`` reading an external file.

    Args:
        boxes: what :func:`load_proposal_file` returned.
        dataset: the dataset the hook serves (to name its images).
        path: the file, for messages.
        max_proposals: keep at most this many per image.
    """

    name = "external"

    def __init__(self, boxes: Mapping[str, np.ndarray], dataset: DetectionDataset, path: Path, max_proposals: int) -> None:
        self.boxes, self.dataset, self.path, self.max_proposals = boxes, dataset, path, max_proposals
        missing = [image_keys(dataset, i)[0] for i in range(len(dataset)) if self._find(i) is None]
        if missing:
            shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
            raise ProposalFileError(
                f"{path}: no proposals for {len(missing)} of {len(dataset)} images of {dataset.name} "
                f"(e.g. {shown}); keys are described in harness/proposals/external.py and the README"
            )

    def _find(self, index: int) -> np.ndarray | None:
        return next((self.boxes[k] for k in image_keys(self.dataset, index) if k in self.boxes), None)

    def __call__(self, index: int, image: np.ndarray) -> Tensor:
        boxes = torch.from_numpy(self._find(index)[: self.max_proposals].copy())
        return clip_boxes_to_image(boxes, (int(image.shape[0]), int(image.shape[1])))
