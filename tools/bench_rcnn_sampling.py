"""Fine-tuning steps of both R-CNN samplers (rcnn.finetune_sampling), interleaved so machine load hits both alike:
the default rcnn cpu config, 30 steps each; prints data-loading and SGD-step seconds and the ratio (README, R-CNN).
Run from the repository root: python tools/bench_rcnn_sampling.py"""
import time

import torch

from harness.config import build_config
from harness.proposals.stage import attach_proposals
from harness.run.builder import build_model
from harness.run.runner import build_datasets
from harness.train.engine import (
    _train_step,
    epoch_loader,
    make_optimizer,
    make_scheduler,
)
from harness.train.rcnn import sampled_regions

cfg = build_config(detector="rcnn", overrides={"train.epochs": 2, "proposals.workers": 0})
train_set, test_set = build_datasets(cfg)
attach_proposals(cfg, train_set, test_set)
k = train_set.num_classes
torch.manual_seed(0); m_img = build_model(cfg, num_classes=k)
torch.manual_seed(0); m_ds = build_model(cfg, num_classes=k)
t = time.perf_counter()
regions = sampled_regions(m_ds, train_set, cfg)
print(f"pool pass {time.perf_counter() - t:.1f} s over {len(train_set)} images", flush=True)
dev = torch.device("cpu")
runs = {}
for name, model, ds in (("image", m_img, train_set), ("dataset", m_ds, regions)):
    model.train()
    opt = make_optimizer(model, cfg.train)
    runs[name] = [model, opt, make_scheduler(opt, cfg.train, 240), iter(epoch_loader(ds, cfg.train, seed=0, epoch=0)), 0.0, 0.0]
for rnd in range(3):
    for name, r in runs.items():
        for _ in range(10):
            t0 = time.perf_counter(); batch = next(r[3]); t1 = time.perf_counter()
            _train_step(r[0], r[1], r[2], batch, device=dev, grad_clip=None, step=0)
            t2 = time.perf_counter()
            r[4] += t1 - t0; r[5] += t2 - t1
        print(rnd, name, f"load {r[4]:.1f} s, step {r[5]:.1f} s (cumulative)", flush=True)
a, b = runs["dataset"], runs["image"]
print(f"30 steps each: dataset {a[4] + a[5]:.1f} s, image {b[4] + b[5]:.1f} s, ratio dataset/image {(a[4] + a[5]) / (b[4] + b[5]):.2f}")
