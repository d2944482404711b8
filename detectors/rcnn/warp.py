"""Crop-and-warp of region proposals to the network input (R-CNN section 2.1, appendix A).

Each proposal is dilated so that the warped crop holds ``padding`` pixels of
context on every side at the network input scale, then warped anisotropically
(width and height scaled independently) to ``S x S`` by bilinear interpolation
without anti-aliasing, as R-CNN's code does. The crops of each image come from
one ``F.grid_sample`` call (one sample per output pixel) on the normalised image
batch: no per-crop Python loop, and every CPU thread busy.

Border handling: where the dilated box leaves the image, R-CNN fills the crop
with the image mean (appendix A, "the mean is subtracted... pixels outside the
image are filled with the mean"). After normalisation the mean is 0, and
``grid_sample(padding_mode="zeros")`` reads 0 outside the image, so zeros are
exactly R-CNN's fill; within half a pixel of the border the bilinear sample
blends the edge pixel with that fill. The zero padding that batches images of
different sizes is, for the same reason, mean-coloured context.

Shape shorthand: B = images, R = regions over the batch, S = crop size.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor


def normalize_batch(
    images: list[Tensor], mean: Tensor, std: Tensor, *, size_divisible: int = 1
) -> tuple[Tensor, list[tuple[int, int]]]:
    """Normalise ``[3, H_i, W_i]`` images in [0, 1] and zero-pad them into one batch.

    Args:
        mean, std: ``[3]`` (or broadcastable ``[1, 3, 1, 1]``) normalisation.
        size_divisible: pad height and width to a multiple of this.
    Returns:
        ``[B, 3, Hp, Wp]`` and each image's ``(h, w)`` before padding.
    """
    sizes = [(int(im.shape[-2]), int(im.shape[-1])) for im in images]
    hp = int(math.ceil(max(h for h, _ in sizes) / size_divisible) * size_divisible)
    wp = int(math.ceil(max(w for _, w in sizes) / size_divisible) * size_divisible)
    mean, std = mean.reshape(3, 1, 1), std.reshape(3, 1, 1)
    batch = torch.stack([F.pad((im - mean) / std, (0, wp - w, 0, hp - h)) for im, (h, w) in zip(images, sizes)])
    return batch, sizes


def context_boxes(boxes: Tensor, *, crop_size: int, padding: int) -> Tensor:
    """Dilate ``[R, 4]`` boxes so that, warped to ``crop_size``, they keep ``padding`` px of context.

    The box itself lands on the central ``S - 2p`` pixels of the crop, so each side
    grows by ``p * w / (S - 2p)`` horizontally and ``p * h / (S - 2p)`` vertically
    (R-CNN appendix A, "dilate the proposal so that at the warped size there are
    exactly p pixels of warped image context around the original box").
    """
    inner = crop_size - 2 * padding
    if inner <= 0:
        raise ValueError(f"context padding {padding} leaves no room in a {crop_size}-pixel crop")
    w = (boxes[:, 2] - boxes[:, 0]).clamp(min=1e-3)
    h = (boxes[:, 3] - boxes[:, 1]).clamp(min=1e-3)
    grow_x, grow_y = padding * w / inner, padding * h / inner
    return torch.stack((boxes[:, 0] - grow_x, boxes[:, 1] - grow_y, boxes[:, 2] + grow_x, boxes[:, 3] + grow_y), dim=1)


def region_rois(boxes: list[Tensor], *, crop_size: int, padding: int, like: Tensor) -> Tensor:
    """Dilated regions of B images as one ``[R, 5]`` ``(image index, x1, y1, x2, y2)`` tensor.

    Args:
        boxes: B tensors ``[R_i, 4]`` xyxy in pixels of their image.
        like: a tensor whose device and dtype the result takes (the image batch).
    """
    if not boxes:
        return like.new_zeros((0, 5))
    index = torch.cat([torch.full((b.shape[0],), float(i)) for i, b in enumerate(boxes)]).to(like)
    flat = torch.cat(boxes).to(like)
    return torch.cat((index[:, None], context_boxes(flat, crop_size=crop_size, padding=padding)), dim=1)


def warp_rois(batch: Tensor, rois: Tensor, *, crop_size: int) -> Tensor:
    """``[n, 5]`` dilated regions (from :func:`region_rois`) -> ``[n, 3, S, S]`` crops.

    One bilinear sample at the centre of each output pixel (R-CNN's own warp,
    rcnn_im_crop.m: imresize 'bilinear' with antialiasing off), all crops of an
    image in one ``F.grid_sample`` call: the crops' sampling grids are stacked
    into ``T`` tall grids (T = intra-op threads) over ``T`` views of the same image
    (``expand``, no copy), because PyTorch's CPU kernel parallelises over the
    batch dimension (``roi_align``'s CPU kernel runs on one thread). Same sample
    points as ``roi_align(..., sampling_ratio=1, aligned=True)``. Callers warp a
    long region list in chunks (``rois[s:s + chunk]``), so memory stays at
    ``chunk * 3 * S * S`` floats however many proposals an image has.
    """
    n, channels = rois.shape[0], batch.shape[1]
    out = batch.new_empty((n, channels, crop_size, crop_size))
    if n == 0:
        return out
    height, width = batch.shape[-2:]
    steps = (torch.arange(crop_size, device=batch.device, dtype=batch.dtype) + 0.5) / crop_size
    x1, y1, x2, y2 = rois[:, 1:].to(batch.dtype).unbind(1)
    # sample points in pixel-edge coordinates (pixel i spans [i, i+1]), then grid_sample's [-1, 1]
    gx = (x1[:, None] + steps * (x2 - x1)[:, None]) * (2.0 / width) - 1.0  # [n, S]
    gy = (y1[:, None] + steps * (y2 - y1)[:, None]) * (2.0 / height) - 1.0
    grid = torch.stack(torch.broadcast_tensors(gx[:, None, :], gy[:, :, None]), dim=-1)  # [n, S, S, 2]
    image_of = rois[:, 0].long()
    for b in image_of.unique().tolist():
        rows = (image_of == b).nonzero().squeeze(1)
        lo, hi = int(rows[0]), int(rows[-1]) + 1
        if hi - lo == rows.numel():  # region_rois keeps each image's regions together: fill in place
            _sample_crops(batch[b : b + 1], grid[lo:hi], out[lo:hi])
        else:
            part = batch.new_empty((rows.numel(), channels, crop_size, crop_size))
            _sample_crops(batch[b : b + 1], grid[rows], part)
            out[rows] = part
    return out


def _sample_crops(image: Tensor, grids: Tensor, out: Tensor) -> None:
    """``[1, C, H, W]`` and ``[m, S, S, 2]`` sampling grids -> ``out [m, C, S, S]`` (filled)."""
    m, size = grids.shape[0], grids.shape[1]
    parts = max(1, min(torch.get_num_threads(), m)) if image.device.type == "cpu" else 1
    per = -(-m // parts)  # crops per tall grid; the last grid is padded with copies of a real one
    padded = torch.cat((grids, grids[-1:].expand(parts * per - m, -1, -1, -1))) if parts * per > m else grids
    tall = padded.reshape(parts, per * size, size, 2)
    crops = F.grid_sample(image.expand(parts, -1, -1, -1), tall, mode="bilinear", padding_mode="zeros",
                          align_corners=False)  # [parts, C, per * S, S]
    crops = crops.view(parts, image.shape[1], per, size, size)
    for j in range(parts):  # one strided copy per tall grid, straight into place
        lo, hi = j * per, min(m, (j + 1) * per)
        if lo < hi:
            out[lo:hi].copy_(crops[j, :, : hi - lo].transpose(0, 1))


def warp_regions(batch: Tensor, boxes: list[Tensor], *, crop_size: int, padding: int) -> Tensor:
    """Warp every region of every image to ``S x S`` (one ``grid_sample`` call per image).

    Args:
        batch: normalised ``[B, 3, Hp, Wp]`` (see :func:`normalize_batch`).
        boxes: B tensors ``[R_i, 4]`` xyxy in pixels of their image.
        crop_size: S.
        padding: context pixels at the S scale (16 at S = 224 in the paper).
    Returns:
        ``[R, 3, S, S]`` crops, regions in the order of ``boxes``.
    """
    rois = region_rois(boxes, crop_size=crop_size, padding=padding, like=batch)
    return warp_rois(batch, rois, crop_size=crop_size)
