"""Crop-and-warp of region proposals to the network input (R-CNN section 2.1, appendix A).

Each proposal is dilated so that the warped crop holds ``padding`` pixels of
context on every side at the network input scale, then warped anisotropically
(width and height scaled independently) to ``S x S`` by bilinear interpolation
without anti-aliasing, as R-CNN's code does. All crops of a batch are produced
by one ``torchvision.ops.roi_align`` call (one sample per output pixel) on the
normalised image batch: no per-crop Python loop.

Border handling: where the dilated box leaves the image, R-CNN fills the crop
with the image mean (appendix A, "the mean is subtracted... pixels outside the
image are filled with the mean"). After normalisation the mean is 0, and
``roi_align`` samples 0 beyond one pixel outside the image, so zeros are
exactly R-CNN's fill. Within one pixel of the border torchvision's bilinear
sampler clamps to the edge pixel (a half-pixel seam, the same in every detector
that uses ``roi_align``). The zero padding that batches images of different
sizes is, for the same reason, mean-coloured context.

Shape shorthand: B = images, R = regions over the batch, S = crop size.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.ops import roi_align


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

    Callers warp a long region list in chunks (``rois[s:s + chunk]``), so memory
    stays at ``chunk * 3 * S * S`` floats however many proposals an image has
    (2000 crops of 224 x 224 would be 1.2 GB at once).
    """
    if rois.shape[0] == 0:
        return batch.new_zeros((0, 3, crop_size, crop_size))
    # aligned=True: box coordinates are continuous pixel edges (pixel i spans [i, i+1]), the data
    # contract's frame. sampling_ratio=1: one bilinear sample at each output pixel's centre, which is
    # R-CNN's own warp (rcnn_im_crop.m: imresize 'bilinear' with antialiasing off); 2x2 samples
    # would add an anti-aliasing R-CNN did not have and cost 3x the time (see harness bench-rcnn).
    return roi_align(batch, rois, (crop_size, crop_size), spatial_scale=1.0, sampling_ratio=1, aligned=True)


def warp_regions(batch: Tensor, boxes: list[Tensor], *, crop_size: int, padding: int) -> Tensor:
    """Warp every region of every image to ``S x S`` in one ``roi_align`` call.

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
