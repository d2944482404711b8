"""The Fast R-CNN RoI head, shared by Fast and Faster R-CNN (Fast R-CNN, section 2).

RoI pooling (``torchvision.ops.roi_pool`` or ``roi_align``) -> the backbone's FC
layers -> sibling outputs: K+1 class logits and class-specific box deltas.
Forward returns raw logits and deltas; sampling, losses and post-processing are
separate functions so ablations swap one of them and stage timings stay clean.

Shape shorthand: R = RoIs in the batch, K = object classes, D = representation size.
"""
from __future__ import annotations

import functools
import warnings
from concurrent.futures import ThreadPoolExecutor

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import (
    batched_nms,
    clip_boxes_to_image,
    remove_small_boxes,
    roi_align,
    roi_pool,
)

from .box_ops import BoxCoder, Matcher, match_to_gt, sample_balanced

# Below this many RoIs a thread hand-off costs more than it saves (RoI max pooling).
PARALLEL_MIN_ROIS = 64


@functools.lru_cache(maxsize=None)
def _pool_threads(n: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=n, thread_name_prefix="roi-pool")


def _spread(fn, items: list) -> list:
    """``[fn(x) for x in items]``, the first on this thread, the rest on the pool's threads."""
    futures = [_pool_threads(len(items)).submit(fn, x) for x in items[1:]]
    return [fn(items[0]), *(f.result() for f in futures)]


class _ThreadedRoIPool(torch.autograd.Function):
    """torchvision's RoI max pooling with forward *and* backward split into RoI chunks on threads.

    Each chunk's backward scatters into its own full-size gradient buffer (no
    races); the buffers are summed in chunk order, so the result is
    deterministic for a given thread count.
    """

    @staticmethod
    def forward(ctx, features: Tensor, rois: Tensor, size: tuple[int, int], scale: float, threads: int) -> Tensor:
        h, w = size
        outs = _spread(lambda c: torch.ops.torchvision.roi_pool(features, c, scale, h, w),
                       list(rois.tensor_split(threads)))
        ctx.save_for_backward(rois, *(a for _, a in outs))
        ctx.args = (size, scale, threads, tuple(features.shape))
        return torch.cat([o for o, _ in outs])

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor) -> tuple:
        none = (None,) * 4
        if not ctx.needs_input_grad[0]:
            return (None, *none)
        rois, *argmax = ctx.saved_tensors
        (h, w), scale, threads, (b, c, fh, fw) = ctx.args

        def one(part):
            r, g, a = part
            return torch.ops.torchvision._roi_pool_backward(g.contiguous(), r, a, scale, h, w, b, c, fh, fw)

        partial = _spread(one, list(zip(rois.tensor_split(threads), grad.tensor_split(threads), argmax)))
        total = partial[0]
        for p in partial[1:]:
            total += p
        return (total, *none)


def roi_align_matrix(rois: Tensor, feature_shape: tuple[int, int, int], size: tuple[int, int], spatial_scale: float,
                     sampling_ratio: int, aligned: bool) -> Tensor:
    """RoI Align as a sparse matrix: ``[R*h*w, B*Hf*Wf]`` (CSR), row = one RoI bin, columns = feature cells.

    The sample points and bilinear weights of ``torchvision.ops.roi_align`` (Mask R-CNN's RoIAlign,
    ``sampling_ratio`` > 0 points per bin side): a point beyond one cell outside the map counts as 0,
    one within it is clamped to the border. Each bin averages ``sampling_ratio**2`` points of 4
    corners, so each row has ``(2 * sampling_ratio)**2`` entries (repeated columns add up).
    """
    b, fh, fw = feature_shape
    h, w = size
    r, dt = rois.shape[0], rois.dtype
    offset = 0.5 if aligned else 0.0
    x1, y1 = rois[:, 1] * spatial_scale - offset, rois[:, 2] * spatial_scale - offset
    rw, rh = rois[:, 3] * spatial_scale - offset - x1, rois[:, 4] * spatial_scale - offset - y1
    if not aligned:  # the legacy op makes every RoI at least one cell wide
        rw, rh = rw.clamp(min=1.0), rh.clamp(min=1.0)
    sub = (torch.arange(sampling_ratio, dtype=dt, device=rois.device) + 0.5) / sampling_ratio

    def axis(start: Tensor, length: Tensor, cells: int, bins: int) -> tuple[Tensor, Tensor]:
        steps = (torch.arange(bins, dtype=dt, device=rois.device)[:, None] + sub).reshape(-1)
        at = start[:, None] + steps * (length / bins)[:, None]  # [R, bins * ratio] sample coordinates
        inside = ((at >= -1.0) & (at <= cells)).to(dt)
        at = at.clamp(min=0)
        low = at.floor().clamp(max=cells - 1)
        frac = at - low  # beyond the last cell both corners are that cell: weights 1 - frac + frac = 1
        low = low.long()
        index = torch.stack((low, (low + 1).clamp(max=cells - 1)), -1).view(r, bins, 2 * sampling_ratio)
        weight = (torch.stack((1 - frac, frac), -1) * inside[..., None]).view(r, bins, 2 * sampling_ratio)
        return index, weight

    yi, wy = axis(y1, rh, fh, h)
    xi, wx = axis(x1, rw, fw, w)
    image = rois[:, 0].long()[:, None, None, None, None]
    cols = image * (fh * fw) + yi[:, :, None, :, None] * fw + xi[:, None, :, None, :]  # [R, h, w, 2s, 2s]
    vals = wy[:, :, None, :, None] * wx[:, None, :, None, :] * (1.0 / sampling_ratio ** 2)
    per_row = (2 * sampling_ratio) ** 2
    crow = torch.arange(0, r * h * w * per_row + 1, per_row, device=rois.device)
    with warnings.catch_warnings():  # "sparse CSR support is in beta": matmul with a dense matrix is all we use
        warnings.simplefilter("ignore")
        return torch.sparse_csr_tensor(crow, cols.reshape(-1), vals.reshape(-1), size=(r * h * w, b * fh * fw))


class _SparseRoIAlign(torch.autograd.Function):
    """RoI Align on the CPU as one sparse x dense product, forward and backward.

    torchvision's CPU kernels run on one thread and its backward recomputes the
    bilinear weights for every channel; here the weights are computed once per
    bin (:func:`roi_align_matrix`, S) and the features, as ``[B*Hf*Wf, C]``
    (channels-last: a view), are multiplied by S; the gradient is ``S^T @ grad``.
    Both products run on every intra-op thread, one output row per thread, so
    the result does not depend on the thread count.
    """

    @staticmethod
    def forward(ctx, features: Tensor, rois: Tensor, size: tuple[int, int], scale: float, sampling_ratio: int,
                aligned: bool) -> Tensor:
        b, c, fh, fw = features.shape
        matrix = roi_align_matrix(rois, (b, fh, fw), size, scale, sampling_ratio, aligned)
        cells = features.permute(0, 2, 3, 1).reshape(b * fh * fw, c)
        ctx.matrix, ctx.feature_shape = matrix, (b, c, fh, fw)
        return (matrix @ cells).view(rois.shape[0], size[0], size[1], c).permute(0, 3, 1, 2)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor) -> tuple:
        none = (None,) * 5
        if not ctx.needs_input_grad[0]:
            return (None, *none)
        b, c, fh, fw = ctx.feature_shape
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            transposed = ctx.matrix.t().to_sparse_csr()
        cells = transposed @ grad.permute(0, 2, 3, 1).reshape(-1, c)
        return (cells.view(b, fh, fw, c).permute(0, 3, 1, 2), *none)


def pool_rois(kind: str, features: Tensor, rois: Tensor, size: tuple[int, int], spatial_scale: float,
              sampling_ratio: int = 2, aligned: bool = True) -> Tensor:
    """RoI pooling of ``[R, 5]`` rois: ``kind`` ``"roi_pool"`` (max) or ``"roi_align"``; ``[R, C, h, w]``.

    The values are torchvision's (``roi_pool`` exactly; ``roi_align`` up to
    float rounding); on the CPU both are computed faster than its kernels, which
    run on one thread: RoI max pooling splits the RoIs into one chunk per
    intra-op thread, pooled concurrently forward and backward (they release the
    GIL); RoI Align becomes a sparse matrix product (:class:`_SparseRoIAlign`).
    CUDA kernels are already parallel and get one call.
    """
    if kind not in ("roi_pool", "roi_align"):
        raise ValueError(f"pooler must be roi_pool or roi_align, got {kind!r}")
    on_cpu = features.device.type == "cpu"
    if kind == "roi_align":
        if on_cpu and sampling_ratio > 0 and features.dtype == rois.dtype:
            return _SparseRoIAlign.apply(features, rois, tuple(size), float(spatial_scale), sampling_ratio, aligned)
        return roi_align(features, rois, size, spatial_scale, sampling_ratio, aligned)
    threads = torch.get_num_threads()
    if not on_cpu or threads < 2 or rois.shape[0] < PARALLEL_MIN_ROIS:
        return roi_pool(features, rois, size, spatial_scale)
    return _ThreadedRoIPool.apply(features, rois, tuple(size), float(spatial_scale), threads)


class RoIHead(nn.Module):
    """Pool -> box head -> (class logits, deltas).

    Args:
        box_head: maps pooled ``[R, C, S, S]`` to ``[R, D]`` (the backbone's FC layers).
        representation_size: D.
        num_classes: K (background excluded).
        pooler: ``"roi_pool"`` (max pooling, the paper) or ``"roi_align"``.
        pooled_size: S (7 for VGG16).
        spatial_scale: 1 / stride.
    """

    def __init__(
        self,
        *,
        box_head: nn.Module,
        representation_size: int,
        num_classes: int,
        pooler: str = "roi_pool",
        pooled_size: int = 7,
        spatial_scale: float = 1.0 / 16,
    ) -> None:
        super().__init__()
        if pooler not in ("roi_pool", "roi_align"):
            raise ValueError(f"pooler must be roi_pool or roi_align, got {pooler!r}")
        self.box_head = box_head
        self.pooler, self.pooled_size, self.spatial_scale = pooler, pooled_size, spatial_scale
        self.cls_score = nn.Linear(representation_size, num_classes + 1)
        self.bbox_pred = nn.Linear(representation_size, 4 * (num_classes + 1))
        nn.init.normal_(self.cls_score.weight, std=0.01)  # Fast R-CNN 2.3: std 0.01 and 0.001
        nn.init.normal_(self.bbox_pred.weight, std=0.001)
        nn.init.zeros_(self.cls_score.bias)
        nn.init.zeros_(self.bbox_pred.bias)

    def pool(self, features: Tensor, rois: list[Tensor]) -> Tensor:
        """``[B, C, Hf, Wf]`` + B lists of boxes -> ``[R, C, S, S]``.

        Pooling runs in float32 under autocast (torchvision's CPU kernels have no
        bfloat16 version; its CUDA autocast casts to float32 as well).
        """
        size = (self.pooled_size, self.pooled_size)
        indexed = torch.cat([torch.cat((r.new_full((r.shape[0], 1), i), r), dim=1) for i, r in enumerate(rois)])
        with torch.autocast(features.device.type, enabled=False):
            features, indexed = features.float(), indexed.float()
            return pool_rois(self.pooler, features, indexed, size, self.spatial_scale)

    def forward(self, features: Tensor, rois: list[Tensor]) -> tuple[Tensor, Tensor]:
        """Returns class logits ``[R, K+1]`` and deltas ``[R, 4 (K+1)]``."""
        x = self.box_head(self.pool(features, rois))
        return self.cls_score(x), self.bbox_pred(x)

    def features(self, features: Tensor, rois: list[Tensor]) -> Tensor:
        """The last FC layer's RoI features ``[R, D]`` (fc7 on VGG16): what Fast R-CNN's SVMs train on."""
        return self.box_head(self.pool(features, rois))


class RoISampler:
    """Mini-batch of RoIs per image (Fast R-CNN 2.3): gt boxes added, 25% foreground.

    Foreground: IoU >= ``fg_iou`` with a gt box; background: max IoU in
    ``[bg_iou_low, bg_iou_high)``; the rest is not sampled.
    """

    def __init__(
        self,
        *,
        batch_size_per_image: int = 128,
        positive_fraction: float = 0.25,
        fg_iou: float = 0.5,
        bg_iou_high: float = 0.5,
        bg_iou_low: float = 0.1,
        box_coder: BoxCoder,
    ) -> None:
        self.matcher = Matcher(fg_iou, bg_iou_high, low_min=bg_iou_low)
        self.batch_size_per_image, self.positive_fraction = batch_size_per_image, positive_fraction
        self.box_coder = box_coder

    def __call__(self, proposals: list[Tensor], targets: list[dict]) -> tuple[list[Tensor], Tensor, Tensor]:
        """Returns sampled RoIs (per image), labels ``int64 [R]`` and regression targets ``[R, 4]``."""
        rois, labels, box_targets = [], [], []
        for props, target in zip(proposals, targets):
            gt_boxes = target["boxes"].to(props.device)
            props = torch.cat((props, gt_boxes))
            lab, matched = match_to_gt(self.matcher, props, gt_boxes, target["labels"].to(props.device))
            pos, neg = sample_balanced(
                lab, batch_size=self.batch_size_per_image, positive_fraction=self.positive_fraction
            )
            keep = torch.cat((pos, neg))
            rois.append(props[keep])
            labels.append(lab[keep])
            box_targets.append(self.box_coder.encode(props[keep], matched[keep]))
        return rois, torch.cat(labels), torch.cat(box_targets)


def fast_rcnn_losses(
    class_logits: Tensor, deltas: Tensor, labels: Tensor, box_targets: Tensor, *, box_weight: float = 1.0
) -> dict[str, Tensor]:
    """Multi-task loss L = L_cls + lambda [u >= 1] L_loc (Fast R-CNN, eq. 1).

    L_loc is smooth L1 (beta 1, eq. 3) on the deltas of the true class, summed over
    the four coordinates and averaged over all sampled RoIs.
    """
    loss_cls = F.cross_entropy(class_logits, labels)
    fg = torch.nonzero(labels > 0).flatten()
    # (R, 4*(K+1)) -> (R, K+1, 4), then pick each foreground RoI's own class
    per_class = deltas.reshape(deltas.shape[0], -1, 4)
    loss_box = F.smooth_l1_loss(per_class[fg, labels[fg]], box_targets[fg], beta=1.0, reduction="sum")
    return {"loss_cls": loss_cls, "loss_box": box_weight * loss_box / max(labels.numel(), 1)}


def postprocess_detections(
    class_logits: Tensor,
    deltas: Tensor,
    rois: list[Tensor],
    image_sizes: list[tuple[int, int]],
    *,
    box_coder: BoxCoder,
    score_thresh: float = 0.05,
    nms_thresh: float = 0.3,
    max_detections: int = 100,
    min_size: float = 1e-2,
) -> list[dict[str, Tensor]]:
    """Softmax, class-specific decoding, clipping, score threshold, per-class NMS, top-k.

    Returns one ``{"boxes": [D, 4], "labels": int64 [D], "scores": [D]}`` per image.
    """
    scores_all = F.softmax(class_logits, dim=1)
    boxes_all = box_coder.decode(torch.cat(rois), deltas)
    results = []
    start = 0
    for image_rois, size in zip(rois, image_sizes):
        end = start + image_rois.shape[0]
        num_cls = scores_all.shape[1]
        # (R_i, 4*(K+1)) -> (R_i, K+1, 4); drop the background column
        boxes = boxes_all[start:end].reshape(-1, num_cls, 4)[:, 1:]
        results.append(
            select_detections(
                boxes, scores_all[start:end, 1:], size, score_thresh=score_thresh, nms_thresh=nms_thresh,
                max_detections=max_detections, min_size=min_size,
            )
        )
        start = end
    return results


def select_detections(
    boxes: Tensor,
    scores: Tensor,
    image_size: tuple[int, int],
    *,
    score_thresh: float,
    nms_thresh: float,
    max_detections: int,
    min_size: float = 1e-2,
) -> dict[str, Tensor]:
    """Clip, score threshold, drop tiny boxes, per-class NMS, keep the top ``max_detections``.

    Shared by the softmax head above and R-CNN's SVM scores.

    Args:
        boxes: ``[R, K, 4]`` class-specific boxes of one image; scores: ``[R, K]``
            (column k is class k + 1).
    Returns:
        ``{"boxes": [D, 4], "labels": int64 [D] in 1..K, "scores": [D]}``.
    """
    boxes = clip_boxes_to_image(boxes, image_size)
    labels = torch.arange(1, scores.shape[1] + 1, device=scores.device).expand_as(scores)
    # (R, K, 4) -> (R*K, 4): one candidate per (region, class)
    boxes, scores, labels = boxes.reshape(-1, 4), scores.reshape(-1), labels.reshape(-1)
    keep = torch.nonzero(scores > score_thresh).flatten()
    boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
    keep = remove_small_boxes(boxes, min_size)
    boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
    keep = batched_nms(boxes, scores, labels, nms_thresh)[:max_detections]
    return {"boxes": boxes[keep], "labels": labels[keep], "scores": scores[keep]}
