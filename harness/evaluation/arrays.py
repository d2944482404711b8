"""Detections and targets as numpy arrays: the conversions the VOC and COCO evaluators share.

Inputs follow the data contract of :mod:`harness.data.base`: ``Prediction`` is
``{"boxes": float32 [M, 4] xyxy, "labels": int64 [M] (1..K), "scores": float32 [M]}``
(torch tensors or numpy arrays); ``Target`` is a target dict.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

Prediction = Mapping[str, Any]
Target = Mapping[str, Any]


def as_numpy(x: Any, dtype: Any, shape_tail: tuple[int, ...] = ()) -> np.ndarray:
    """Tensor / ndarray / list → contiguous numpy array of ``dtype``, shape ``[-1, *shape_tail]``."""
    if isinstance(x, torch.Tensor):
        x = x.detach().cpu().numpy()
    return np.ascontiguousarray(np.asarray(x, dtype=dtype).reshape((-1, *shape_tail)))


def gt_arrays(target: Target) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(boxes [N, 4] float64, labels [N] int64, difficult [N] bool, iscrowd [N] bool)``."""
    boxes = as_numpy(target["boxes"], np.float64, (4,))
    labels = as_numpy(target["labels"], np.int64)
    n = labels.shape[0]
    flags = []
    for key in ("difficult", "iscrowd"):
        value = target.get(key)
        flags.append(np.zeros(n, dtype=bool) if value is None else as_numpy(value, bool))
    return boxes, labels, flags[0], flags[1]


def pred_arrays(pred: Prediction) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(boxes [M, 4] float64, labels [M] int64, scores [M] float64)``."""
    boxes = as_numpy(pred["boxes"], np.float64, (4,))
    labels = as_numpy(pred["labels"], np.int64)
    scores = as_numpy(pred["scores"], np.float64)
    if not boxes.shape[0] == labels.shape[0] == scores.shape[0]:
        raise ValueError(
            f"prediction has {boxes.shape[0]} boxes, {labels.shape[0]} labels, {scores.shape[0]} scores"
        )
    return boxes, labels, scores


def image_id_of(target: Target, index: int) -> int:
    return int(target.get("image_id", index))


def default_label_to_category(num_classes: int) -> dict[int, int]:
    return {k: k for k in range(1, num_classes + 1)}


def float_or_none(x: float | None) -> float | None:
    """Python float, or ``None`` for missing / NaN / pycocotools' ``-1`` sentinel."""
    if x is None:
        return None
    x = float(x)
    return None if (math.isnan(x) or x < 0) else x


