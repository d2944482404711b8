"""R-CNN's fine-tuning sampling across the training set (section 2.3), and the per-image ablation."""
import dataclasses

import pytest
import torch
from rcnn_fixtures import tiny_dataset, tiny_rcnn
from torchvision.ops import box_iou

import harness.train.rcnn as rcnn_train
from harness.data import training_target
from harness.run.checkpoint import load_checkpoint
from harness.train.engine import train
from harness.train.rcnn import sampled_regions, train_rcnn, unflipped
from harness.train.rcnn_sampling import (
    ImageCache,
    SampledRegions,
    build_pool,
    draw_distinct,
)

SMALL = {"data.min_size": 96, "data.max_size": 128}


@pytest.fixture(scope="module")
def setup():
    model, cfg = tiny_rcnn(**SMALL)
    dataset = tiny_dataset(images=8)
    return model, cfg, dataset, sampled_regions(model, dataset, cfg)


def _batch(regions, indices):
    items = [regions[i] for i in indices]
    return [crops for crops, _ in items], [target for _, target in items]


def test_a_minibatch_mixes_many_images_32_foreground_96_background(setup):
    _, cfg, dataset, regions = setup
    assert len(regions) == len(dataset) and regions.per_item == 128 // cfg.train.images_per_batch
    crops, targets = _batch(regions, [0, 1])  # one mini-batch of 2 "images"
    labels = torch.cat([t["region_labels"] for t in targets])
    images = torch.cat([t["region_image"] for t in targets])
    assert torch.cat(crops).shape == (128, 3, 32, 32)
    assert int((labels > 0).sum()) == 32 and int((labels == 0).sum()) == 96
    assert images.unique().numel() > 2  # the per-image sampler could use 2 at most
    summary = regions.pool.summary()
    assert summary["images"] == 8 and summary["fg_regions"] + summary["bg_regions"] == summary["regions"]


def test_labels_are_the_matchers_and_crops_are_the_warped_regions(setup):
    model, cfg, _, regions = setup
    source = unflipped(tiny_dataset(images=8), cfg)
    crops, target = regions[3]
    assert target["region_flipped"].any() and not target["region_flipped"].all()  # flip_prob 0.5 on 64 crops
    for j in range(crops.shape[0]):
        i, box, label = int(target["region_image"][j]), target["region_boxes"][j], int(target["region_labels"][j])
        gt = training_target(source[i][1])
        iou = box_iou(box[None], gt["boxes"])[0]
        if label > 0:  # foreground: IoU >= 0.5 with a gt box of its class (the best match)
            assert iou.max() >= 0.5 - 1e-6 and int(gt["labels"][iou.argmax()]) == label
        else:
            assert iou.numel() == 0 or iou.max() < 0.5
    # the pool holds exactly the regions and labels the per-image path labels (gt boxes + top proposals)
    image, raw = source[5]
    batch, sizes = model.normalize([image])
    (expected_boxes,), (expected_labels,) = model.label_regions(batch, sizes, [training_target(raw)])
    mine = regions.pool.image == 5
    torch.testing.assert_close(regions.pool.boxes[mine], expected_boxes)
    assert torch.equal(regions.pool.labels[mine], expected_labels)
    # a crop is the region warped from the normalised image; a flipped crop, from the mirrored image
    j = int(target["region_flipped"].nonzero()[0])
    i, box = int(target["region_image"][j]), target["region_boxes"][j]
    image, _ = source[i]
    batch, (size,) = model.normalize([image.flip(-1)])
    mirrored = torch.stack((size[1] - box[2], box[1], size[1] - box[0], box[3]))
    rois = torch.cat((torch.zeros(1), mirrored))[None]
    from detectors.rcnn.warp import context_boxes, warp_rois

    rois[:, 1:] = context_boxes(mirrored[None], crop_size=model.crop_size, padding=model.padding)
    torch.testing.assert_close(crops[j], warp_rois(batch, rois, crop_size=model.crop_size)[0], atol=1e-4, rtol=0)


def test_draws_depend_on_seed_epoch_and_index_only(setup):
    model, cfg, dataset, regions = setup
    source = unflipped(dataset, cfg)
    twin = SampledRegions(source, build_pool(model, source), model, per_item=64, fg_fraction=0.25, flip_prob=0.5,
                          seed=cfg.seed, cache=ImageCache(0))  # no cache: every image loaded again
    regions.set_epoch(1)
    twin.set_epoch(1)
    a, b = regions[2], twin[2]
    assert torch.equal(a[0], b[0]) and torch.equal(a[1]["region_labels"], b[1]["region_labels"])
    twin.set_epoch(2)
    assert not torch.equal(twin[2][1]["region_boxes"], a[1]["region_boxes"])
    regions.set_epoch(0)


def test_short_foreground_pool_is_filled_with_background_and_draws_are_distinct():
    g = torch.Generator().manual_seed(0)
    big = draw_distinct(10**7, 64, g)
    assert big.unique().numel() == 64 and int(big.max()) < 10**7
    assert sorted(draw_distinct(5, 16, g).tolist()) == [0, 1, 2, 3, 4]
    model, cfg = tiny_rcnn(**SMALL)
    source = unflipped(tiny_dataset(images=2), cfg)
    pool = build_pool(model, source)
    pool.fg = pool.fg[:3]  # only 3 foreground regions in the whole set
    assert pool.bg.numel() >= 21
    regions = SampledRegions(source, pool, model, per_item=24, fg_fraction=0.25, flip_prob=0.0, seed=0)
    _, target = regions[0]
    labels = target["region_labels"]  # 6 foreground wanted, 3 there: 21 background
    assert labels.numel() == 24 and int((labels > 0).sum()) == 3 and not target["region_flipped"].any()


def test_image_sampling_keeps_the_per_batch_path(tmp_path, monkeypatch):
    model, cfg = tiny_rcnn(**SMALL, **{"train.epochs": 1, "rcnn.finetune_sampling": "image",
                                       "rcnn.hard_negative_rounds": 0, "rcnn.bbox_reg": False})
    seen = []
    real = model.finetune_regions
    monkeypatch.setattr(model, "finetune_regions", lambda *a: seen.append(1) or real(*a))
    monkeypatch.setattr(rcnn_train, "sampled_regions", lambda *a, **k: pytest.fail("pool built in image mode"))
    result = train_rcnn(model, tiny_dataset(images=2), cfg, device=torch.device("cpu"), cache_root=tmp_path)
    assert seen and result.iterations == 1 and result.details["finetune_sampling"] == {"mode": "image"}


@pytest.mark.slow  # about 11 s on the busy 2-core machine
def test_dataset_sampling_trains_and_resumes_bit_identically(tmp_path):
    """The shared loop on sampled regions: interrupted after epoch 1, resumed, equals an uninterrupted run."""
    small = {**SMALL, "rcnn.finetune_batch": 32}  # 16 crops per item: 4 images, 2 steps per epoch
    _, cfg = tiny_rcnn(**small)
    dataset = tiny_dataset(images=4)

    def run(path, *, stop=False, resume=None):
        model, _ = tiny_rcnn(**small)
        regions = sampled_regions(model, dataset, cfg)

        def log(it, values, *, epoch, **_):
            if stop and epoch == 2:
                raise KeyboardInterrupt

        train_cfg = dataclasses.replace(cfg.train, epochs=2, warmup_iters=1)
        try:
            train(model, regions, train_cfg, device=torch.device("cpu"), seed=cfg.seed, checkpoint_path=path,
                  resume=resume, log=log)
        except KeyboardInterrupt:
            pass
        return model

    reference = run(tmp_path / "ref.pt")
    run(tmp_path / "cut.pt", stop=True)
    state = load_checkpoint(tmp_path / "cut.pt")
    assert state["epoch"] == 1
    resumed = run(tmp_path / "cut.pt", resume=state)
    expected, got = reference.state_dict(), resumed.state_dict()
    assert all(torch.equal(expected[k], got[k]) for k in expected)


def test_record_details_name_the_mode_and_pool(tmp_path):
    model, cfg = tiny_rcnn(**SMALL, **{"train.epochs": 1, "rcnn.hard_negative_rounds": 0, "rcnn.bbox_reg": False})
    result = train_rcnn(model, tiny_dataset(images=3), cfg, device=torch.device("cpu"), cache_root=tmp_path)
    sampling = result.details["finetune_sampling"]
    assert sampling["mode"] == "dataset" and sampling["images"] == 3 and sampling["fg_regions"] > 0
    assert sampling["bg_regions"] > 0 and sampling["regions_per_image_slot"] == 64 and result.iterations == 1


@pytest.mark.slow  # forks DataLoader workers
def test_loader_workers_draw_and_warp_what_the_main_process_does():
    """Draws depend on (seed, epoch, index) only and pixels are made on one thread: 2 workers, same weights."""
    weights = []
    for workers in (0, 2):
        model, cfg = tiny_rcnn(**SMALL, **{"rcnn.finetune_batch": 32})
        regions = sampled_regions(model, tiny_dataset(images=4), cfg, workers=workers)
        train(model, regions, dataclasses.replace(cfg.train, epochs=2, warmup_iters=1), device=torch.device("cpu"),
              seed=cfg.seed, workers=workers)
        weights.append(model.state_dict())
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])
