"""Faster R-CNN 4-step alternating training (Faster R-CNN, section 3.2).

1. Train an RPN (its own backbone + RPN head).
2. Train a Fast R-CNN detector (a *separate* backbone + RoI head) on the proposals
   of the step-1 RPN. Up to here the two networks share nothing: this is the
   "unshared features" system of the paper's Table 3 ablation.
3. Put the step-2 detector's backbone under the RPN, freeze it, and fine-tune
   only the RPN's own layers: from now on the convolutional features are shared.
4. Keep the shared backbone frozen and fine-tune only the detector's head on the
   step-3 RPN's proposals.

Each step reuses the one training loop (:func:`harness.train.engine.train`) on a view of
the model that returns only that step's loss terms; frozen parts have
``requires_grad = False`` so the optimiser never touches them.
"""
from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from detectors.proposals import ImageBatch
from detectors.rpn import RegionProposalNetwork
from detectors.two_stage import TwoStageDetector
from harness.train.engine import TrainResult, train
from harness.train.parts import LossSubset, set_trainable

RPN_TERMS = ("loss_rpn_cls", "loss_rpn_box")
HEAD_TERMS = ("loss_cls", "loss_box")


class FrozenRPNProposals(nn.Module):
    """Proposals from a separate, frozen (backbone, RPN) pair: the unshared system.

    Ignores the detector's own features; uses the RPN's train-time top-N while
    the detector trains and its test-time top-N in evaluation.
    """

    def __init__(self, body: nn.Module, rpn: RegionProposalNetwork) -> None:
        super().__init__()
        self.body, self.rpn = body, rpn
        for p in self.parameters():
            p.requires_grad_(False)

    def train(self, mode: bool = True) -> "FrozenRPNProposals":
        super().train(mode)  # self.training picks the top-N; the frozen networks stay in eval
        self.body.eval()
        self.rpn.eval()
        return self

    @torch.no_grad()
    def forward(self, images: ImageBatch, features: Tensor, targets: list[dict] | None, *, top_n: int | None = None):
        feats = self.body(images.tensors)
        logits, deltas = self.rpn.head(feats)
        anchors = self.rpn.anchor_generator(feats.shape[-2:], feats.device)
        mode = "train" if self.training else "test"
        return self.rpn.filter_proposals(anchors, logits, deltas, images.image_sizes, mode, top_n=top_n), {}


@dataclass
class AlternatingResult:
    model: TwoStageDetector  # the final, shared-feature detector
    unshared: TwoStageDetector  # the step-2 system (RPN and detector on separate backbones)
    stage_seconds: dict[str, float] = field(default_factory=dict)
    iterations: int = 0


def train_alternating(
    build: Callable[[], TwoStageDetector], train_step: Callable[[nn.Module, str], Any]
) -> AlternatingResult:
    """Run the four steps.

    Args:
        build: makes a fresh, randomly initialised Faster R-CNN (backbone + RPN + head).
        train_step: ``train_step(module, name)`` trains ``module`` (the loss-subset
            view) with the shared loop and returns an object with ``seconds`` and
            ``iterations`` (:class:`harness.train.engine.TrainResult`).
    """
    times: dict[str, float] = {}
    iterations = 0

    def step(name: str, module: nn.Module) -> None:
        nonlocal iterations
        result = train_step(module, name)
        times[name] = result.seconds
        iterations += result.iterations

    # step 1: RPN on its own backbone
    rpn_model = build()
    step("step1_rpn", LossSubset(rpn_model, RPN_TERMS))
    # step 2: Fast R-CNN on a fresh backbone, fed by the frozen step-1 RPN
    det = build()
    rpn_frozen = FrozenRPNProposals(copy.deepcopy(rpn_model.body), copy.deepcopy(rpn_model.proposal_source))
    det.proposal_source = rpn_frozen
    step("step2_detector", LossSubset(det, HEAD_TERMS))
    unshared = copy.deepcopy(det)
    # step 3: the RPN on the detector's (now frozen) backbone; only RPN layers learn
    shared = det
    shared.proposal_source = copy.deepcopy(rpn_model.proposal_source)
    set_trainable(shared.body, False)
    set_trainable(shared.roi_head, False)
    set_trainable(shared.proposal_source, True)
    step("step3_rpn_shared", LossSubset(shared, RPN_TERMS))
    # step 4: only the detector's head learns, on the step-3 RPN's proposals
    set_trainable(shared.proposal_source, False)
    set_trainable(shared.roi_head, True)
    step("step4_detector_shared", LossSubset(shared, HEAD_TERMS))
    return AlternatingResult(shared, unshared, times, iterations)


def fit_alternating(
    build: Callable[[], TwoStageDetector],
    dataset: Any,
    train_cfg: Any,
    *,
    device: torch.device,
    seed: int,
    workers: int = 0,
    progress: Any = None,
    log: Any = None,
) -> tuple[AlternatingResult, Any]:
    """The four steps with the shared training loop, each for ``train_cfg.epochs`` epochs.

    Returns the result and a :class:`harness.train.engine.TrainResult` summing the steps
    (no per-epoch checkpoint: a 4-step run is restarted, not resumed).
    """
    def train_step(module: nn.Module, name: str) -> TrainResult:
        return train(module, dataset, train_cfg, device=device, seed=seed, workers=workers, progress=progress,
                     log=log.stage(name) if log is not None else None)  # the log's steps run on across steps

    result = train_alternating(build, train_step)
    summary = TrainResult(
        seconds=sum(result.stage_seconds.values()), iterations=result.iterations, epochs_done=train_cfg.epochs
    )
    return result, summary
