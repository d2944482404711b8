"""Anchor generator (Faster R-CNN, 3.1.1).

Shape shorthand: A = anchors per position (scales x ratios), Hf, Wf = feature-map
size, S = stride in pixels.
"""
from __future__ import annotations

import torch
from torch import Tensor


class AnchorGenerator:
    """``len(sizes) * len(ratios)`` anchors per feature-map position.

    Args:
        sizes: anchor side lengths in pixels of the network input (paper: 128, 256, 512
            at a 600-pixel shorter side; a CPU profile scales them with the image).
        ratios: height / width aspect ratios (paper: 0.5, 1, 2).
        stride: feature stride in pixels (16 for every backbone here).
    """

    def __init__(self, *, sizes: tuple[float, ...], ratios: tuple[float, ...], stride: int = 16) -> None:
        if not sizes or not ratios:
            raise ValueError("anchor sizes and ratios must be non-empty")
        self.sizes, self.ratios, self.stride = tuple(sizes), tuple(ratios), stride
        self._cache: dict[tuple[int, int, str], Tensor] = {}

    @property
    def num_anchors(self) -> int:
        return len(self.sizes) * len(self.ratios)

    def cell_anchors(self) -> Tensor:
        """``[A, 4]`` anchors centred on (0, 0), ordered size-major then ratio; area = size²."""
        sizes = torch.tensor(self.sizes, dtype=torch.float32)
        ratios = torch.tensor(self.ratios, dtype=torch.float32)
        h_ratio = ratios.sqrt()
        # (S, 1) * (1, R) -> (S*R,)
        ws = (sizes[:, None] / h_ratio[None, :]).reshape(-1)
        hs = (sizes[:, None] * h_ratio[None, :]).reshape(-1)
        return torch.stack((-ws, -hs, ws, hs), dim=1) / 2

    def __call__(self, feature_size: tuple[int, int], device: torch.device) -> Tensor:
        """All anchors of a ``Hf x Wf`` map: ``[Hf * Wf * A, 4]``, position-major, anchor-minor.

        Anchor centres sit at the centre of each stride cell, ``(x + 0.5) * S``.
        """
        key = (int(feature_size[0]), int(feature_size[1]), str(device))
        if key not in self._cache:
            hf, wf = key[0], key[1]
            xs = (torch.arange(wf, dtype=torch.float32) + 0.5) * self.stride
            ys = (torch.arange(hf, dtype=torch.float32) + 0.5) * self.stride
            cy, cx = torch.meshgrid(ys, xs, indexing="ij")
            # (Hf*Wf, 1, 4) + (1, A, 4) -> (Hf*Wf*A, 4)
            shifts = torch.stack((cx, cy, cx, cy), dim=-1).reshape(-1, 1, 4)
            anchors = (shifts + self.cell_anchors()[None]).reshape(-1, 4)
            self._cache[key] = anchors.to(device)
        return self._cache[key]
