"""R-CNN's fine-tuning sampler: each mini-batch drawn uniformly from every region of the training set.

R-CNN (section 2.3) "uniformly sample[s] 32 positive windows (over all classes)
and 96 background windows to construct a mini-batch of size 128" from the whole
training set, so one mini-batch mixes regions of many images. Fast R-CNN
replaced this with hierarchical sampling (2 images, 64 regions each); that is
the ``rcnn.finetune_sampling=image`` ablation (:meth:`detectors.rcnn.RCNN.finetune_regions`).

- :func:`build_pool`: one pass over the un-flipped training split labels every
  training region (gt boxes + the top ``max_proposals_train`` proposals, exactly
  the regions and labels of :meth:`~detectors.rcnn.RCNN.label_regions`) and keeps
  a foreground and a background index pool.
- :class:`SampledRegions`: a map-style dataset as long as the training split (so
  ``train.epochs``, iterations per epoch and the lr schedule keep their meaning).
  Item ``index`` of epoch ``e`` is ``finetune_batch / images_per_batch`` regions
  (``finetune_fg_fraction`` of them foreground; background fills a short
  foreground pool, as :func:`detectors.box_ops.sample_balanced` does), drawn
  uniformly without replacement from the pools by a generator seeded with
  ``(seed, e, index)`` only, so a resumed run draws what an uninterrupted one
  would. The item is those regions already dilated, warped and normalised
  (``[r, 3, S, S]``), each mirrored with probability ``data.flip_prob`` (mirroring
  the crop is cropping the mirrored image), with ``region_labels`` in its target;
  the model takes the loss on them directly. The two items of a batch draw
  independently, so a region can (rarely) appear twice in one mini-batch.
- :class:`ImageCache`: the normalised images, LRU within a byte budget, since
  one item touches up to ``r`` different images. The pool pass fills it, and
  ``DataLoader`` workers (forked) start from that copy.
"""
from __future__ import annotations

import copy
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from detectors.rcnn import RCNN
from detectors.rcnn.warp import normalize_batch, region_rois, warp_rois
from harness.data.base import DetectionDataset, training_target
from harness.run.seeding import derive_seed

CACHE_BYTES = 2 * 1024**3  # normalised float32 images kept in memory (per process)
SMALL_POOL = 100_000  # below this a draw without replacement is a randperm; above, rejection


@dataclass
class RegionPool:
    """Every training region: ``image [N]`` (index in the split), ``boxes [N, 4]``, ``labels [N]``;
    ``fg`` / ``bg``: indices into them of the foreground (label > 0) and background (label 0) regions."""

    image: Tensor
    boxes: Tensor
    labels: Tensor
    fg: Tensor
    bg: Tensor
    images: int

    def summary(self) -> dict[str, int]:
        return {"images": self.images, "regions": int(self.labels.numel()), "fg_regions": int(self.fg.numel()),
                "bg_regions": int(self.bg.numel())}


class ImageCache:
    """``index -> normalised [3, h, w]`` with least-recently-used eviction beyond ``budget`` bytes."""

    def __init__(self, budget: int) -> None:
        self.budget, self.bytes = int(budget), 0
        self.items: OrderedDict[int, Tensor] = OrderedDict()
        self.hits = self.misses = 0

    def get(self, index: int, load: Callable[[int], Tensor]) -> Tensor:
        image = self.items.get(index)
        if image is not None:
            self.items.move_to_end(index)
            self.hits += 1
            return image
        self.misses += 1
        image = load(index)
        self.put(index, image)
        return image

    def put(self, index: int, image: Tensor) -> None:
        size = image.numel() * image.element_size()
        if size > self.budget or index in self.items:
            return
        while self.bytes + size > self.budget:
            _, old = self.items.popitem(last=False)
            self.bytes -= old.numel() * old.element_size()
        self.items[index] = image
        self.bytes += size


@contextmanager
def one_thread() -> Iterator[None]:
    """Run torch on one thread, as in a DataLoader worker, then restore the count.

    An item is up to r tiny warps, where threads' start-up and synchronisation cost
    more than they save (30x slower on this busy 2-core machine). And every image
    of the cache is loaded under the same thread count, wherever it is loaded
    (pool pass, main process, worker): vectorised kernels split across threads can
    round the last bit differently, and a resumed run must see the same pixels.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _normalised(model: RCNN, image: Tensor) -> Tensor:
    batch, _ = normalize_batch([image], model.mean.cpu(), model.std.cpu())
    return batch[0]


@torch.no_grad()
def build_pool(model: RCNN, dataset: DetectionDataset, *, cache: ImageCache | None = None,
               progress: Any = None) -> RegionPool:
    """Label every training region of ``dataset`` (un-flipped, proposals attached), on the CPU."""
    images, boxes, labels = [], [], []
    n = len(dataset)
    bar = progress("regions", n) if progress else None
    with one_thread():  # the cached pixels must not depend on where an image was loaded (see one_thread)
        for i in range(n):
            image, target = dataset[i]
            t = {k: (v.cpu() if torch.is_tensor(v) else v) for k, v in training_target(target).items()}
            normalised = _normalised(model, image)
            (regions,), (region_labels,) = model.label_regions(normalised[None], [tuple(image.shape[-2:])], [t])
            images.append(torch.full((regions.shape[0],), i, dtype=torch.int32))
            boxes.append(regions.float())
            labels.append(region_labels)
            if cache is not None:
                cache.put(i, normalised)
            if bar:
                bar.advance(1)
    if bar:
        bar.close()
    label = torch.cat(labels) if labels else torch.zeros(0, dtype=torch.int64)
    return RegionPool(image=torch.cat(images) if images else torch.zeros(0, dtype=torch.int32),
                      boxes=torch.cat(boxes) if boxes else torch.zeros(0, 4), labels=label,
                      fg=torch.nonzero(label > 0).flatten(), bg=torch.nonzero(label == 0).flatten(), images=n)


def draw_distinct(n: int, k: int, generator: torch.Generator) -> Tensor:
    """``min(n, k)`` distinct indices in ``[0, n)``, uniformly, in draw order."""
    if k >= n or n <= SMALL_POOL:
        return torch.randperm(n, generator=generator)[:k]
    picked: dict[int, None] = {}  # insertion-ordered set
    while len(picked) < k:  # k << n: almost never more than one round
        for v in torch.randint(n, (2 * k,), generator=generator).tolist():
            picked.setdefault(v)
    return torch.tensor(list(picked)[:k], dtype=torch.int64)


class SampledRegions(torch.utils.data.Dataset):
    """Items of uniformly sampled, pre-warped regions (see the module docstring).

    Args:
        source: the un-flipped training split (proposals are not needed to load its pixels).
        pool: :func:`build_pool` of ``source``.
        model: gives the crop size, context padding and normalisation.
        per_item: regions per item (``finetune_batch // images_per_batch``).
        fg_fraction: foreground share of an item.
        flip_prob: probability of mirroring each crop.
        seed: the run's seed.
        cache: the image cache (a fresh one of :data:`CACHE_BYTES` when None).
    """

    def __init__(self, source: DetectionDataset, pool: RegionPool, model: RCNN, *, per_item: int,
                 fg_fraction: float, flip_prob: float, seed: int, cache: ImageCache | None = None) -> None:
        if pool.fg.numel() + pool.bg.numel() == 0:
            raise ValueError(f"{getattr(source, 'name', 'the training split')} has no region to fine-tune on")
        self.source = copy.copy(source)
        self.source.proposal_provider = None  # pixels only: the pool already holds the regions
        self.name = getattr(source, "name", "training split")
        self.pool, self.per_item, self.seed, self.flip_prob = pool, per_item, seed, flip_prob
        self.num_fg = min(int(pool.fg.numel()), int(per_item * fg_fraction))
        self.num_bg = min(int(pool.bg.numel()), per_item - self.num_fg)
        self.crop_size, self.padding = model.crop_size, model.padding
        self.mean, self.std = model.mean.detach().cpu().clone(), model.std.detach().cpu().clone()
        self.cache = cache if cache is not None else ImageCache(CACHE_BYTES)
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.source)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def draw(self, index: int) -> tuple[Tensor, Tensor]:
        """Item ``index``'s region ids (foreground first) and flip mask: a function of (seed, epoch, index)."""
        g = torch.Generator().manual_seed(derive_seed(self.seed, self.epoch, "regions", index))
        fg = self.pool.fg[draw_distinct(int(self.pool.fg.numel()), self.num_fg, g)]
        bg = self.pool.bg[draw_distinct(int(self.pool.bg.numel()), self.num_bg, g)]
        ids = torch.cat((fg, bg))
        return ids, torch.rand(ids.numel(), generator=g) < self.flip_prob

    def _load(self, index: int) -> Tensor:
        image, _ = self.source[index]
        batch, _ = normalize_batch([image], self.mean, self.std)
        return batch[0]

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Tensor]]:
        with one_thread():
            return self._item(index)

    def _item(self, index: int) -> tuple[Tensor, dict[str, Tensor]]:
        ids, flip = self.draw(index)
        image_of, boxes = self.pool.image[ids].long(), self.pool.boxes[ids]
        crops = torch.empty((ids.numel(), 3, self.crop_size, self.crop_size))
        for i in image_of.unique().tolist():
            rows = (image_of == i).nonzero().flatten()
            image = self.cache.get(i, self._load)[None]
            rois = region_rois([boxes[rows]], crop_size=self.crop_size, padding=self.padding, like=image)
            crops[rows] = warp_rois(image, rois, crop_size=self.crop_size)
        crops[flip] = crops[flip].flip(-1)
        target = {
            "region_labels": self.pool.labels[ids], "region_image": image_of, "region_boxes": boxes,
            "region_flipped": flip,
            # the engine's training_target() filter: no gt boxes travel with pre-warped crops
            "boxes": torch.zeros((0, 4)), "labels": torch.zeros(0, dtype=torch.int64),
            "difficult": torch.zeros(0, dtype=torch.bool), "iscrowd": torch.zeros(0, dtype=torch.bool),
        }
        return crops, target
