"""Faster R-CNN Table 2's ablations: a selective-search-trained Fast R-CNN tested on RPN proposals.

The paper trains Fast R-CNN on selective search (2000 proposals) and, at test
time only, feeds it the proposals of a separately trained RPN: its top 100 / 300
/ 1000 (after NMS), its top 6000 without NMS, N boxes without the cls scores
(a random order, so no ranking and no NMS), and the anchors themselves without
the box regression (ranked and NMS'd). Here, after a ``fast`` run's main test
pass, a Faster R-CNN of the same config (``detector=faster``, joint training) is
trained on the same training images; its RPN (unshared with the Fast R-CNN:
separate weights) supplies the test proposals of each variant. Both networks see
the same resized test images, so the proposals need no mapping.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

from harness.config import RunConfig, to_dict
from harness.data.base import DetectionDataset
from harness.evaluation.detection import evaluate_detections
from harness.evaluation.timing import Stopwatch
from harness.train.engine import to_original_frame, train

# (label, proposals per image, RPN test switches) as the paper's rows
VARIANTS: tuple[tuple[str, int, dict[str, bool]], ...] = (
    ("RPN 100", 100, {}),
    ("RPN 300", 300, {}),
    ("RPN 1000", 1000, {}),
    ("RPN no NMS 6000", 6000, {"test_nms": False}),
    ("RPN no cls 100", 100, {"test_scores": False}),
    ("RPN no cls 300", 300, {"test_scores": False}),
    ("RPN no cls 1000", 1000, {"test_scores": False}),
    ("RPN no reg 300", 300, {"test_regression": False}),
    ("RPN no reg 1000", 1000, {"test_regression": False}),
)


def rpn_config(cfg: RunConfig) -> RunConfig:
    """The proposal network's run config: Faster R-CNN, joint training, everything else as ``cfg``."""
    return dataclasses.replace(cfg, detector="faster", train=dataclasses.replace(cfg.train, scheme="joint"),
                               model=dataclasses.replace(cfg.model, roi_batch_size=128))


@torch.no_grad()
def test_on_proposals(fast: torch.nn.Module, rpn_model: torch.nn.Module, test_set: DetectionDataset, n: int,
                      switches: dict[str, bool], ground_truth: list[dict], *, device: torch.device,
                      max_images: int | None) -> dict[str, Any]:
    """mAP of ``fast`` on the first ``n`` proposals of ``rpn_model``'s RPN with ``switches`` set."""
    rpn = rpn_model.proposal_source
    saved = {k: getattr(rpn, k) for k in switches}
    for k, v in switches.items():
        setattr(rpn, k, v)
    fast.to(device).eval()
    rpn_model.to(device).eval()
    count = len(test_set) if max_images is None else min(max_images, len(test_set))
    predictions, sizes = [], []
    try:
        for i in range(count):
            image, target = test_set[i]
            (props,) = rpn_model.propose([image.to(device)], None, top_n=n)
            sizes.append(props.shape[0])
            (out,) = fast([image.to(device)], [{"proposals": props}])
            predictions.append(to_original_frame(out, target))
    finally:
        for k, v in saved.items():
            setattr(rpn, k, v)
    m = evaluate_detections(predictions, ground_truth[:count], test_set.class_names,
                            label_to_category=test_set.label_to_category)
    return {"num_proposals": n, "mean_proposals": float(np.mean(sizes)) if sizes else 0.0,
            **{k: m.get(k) for k in ("map50_voc07", "map50_area", "coco_ap", "coco_ap50")}}


def rpn_swap_pass(fast: torch.nn.Module, cfg: RunConfig, train_set: DetectionDataset, test_set: DetectionDataset,
                  ground_truth: list[dict], build: Callable[[RunConfig], torch.nn.Module], *, device: torch.device,
                  progress: Any = None) -> dict[str, Any]:
    """Train the RPN's network, then test ``fast`` on each variant's proposals; the record's section."""
    rcfg = rpn_config(cfg)
    rpn_model = build(rcfg)
    with Stopwatch(device) as watch:
        trained = train(rpn_model, train_set, rcfg.train, device=device, seed=cfg.seed, workers=cfg.data.workers,
                        progress=progress, run_config=to_dict(rcfg))
    variants = {label: test_on_proposals(fast, rpn_model, test_set, n, switches, ground_truth, device=device,
                                         max_images=cfg.test.max_images)
                for label, n, switches in VARIANTS}
    return {"rpn_train_s": watch.seconds, "rpn_train_iters": trained.iterations,
            "rpn_final_losses": trained.last_losses,
            "note": "Fast R-CNN trained on selective search; test proposals from a separately trained Faster R-CNN's "
                    "RPN (unshared), model.roi_batch_size 128 for that network as for any faster run",
            "variants": variants}
