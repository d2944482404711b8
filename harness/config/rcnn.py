"""R-CNN's section of the run configuration (``--set rcnn.KEY=VALUE``).

Defaults are the ``cpu`` profile: a 64-pixel crop (the paper's 224 scaled, like
the anchors, with the 192-pixel images of that profile: 224 x 192 / 600 is
about 72), 200 training / 300 test proposals per image (the paper: about
2000). ``--profile paper`` restores 224 / 16 px / 2000 (:data:`RCNN_PAPER`).
The proposals themselves are ``proposals.*`` (selective search, shared with
Fast R-CNN and its cache); R-CNN keeps the first ``min(proposals.max_proposals,
rcnn.max_proposals_train / _test)`` of each image. Fine-tuning length and
learning rate are ``train.epochs`` and ``train.lr`` (R-CNN defaults in
:data:`RCNN_TRAIN_DEFAULTS`); ``rcnn.finetune_sampling`` picks R-CNN's
mini-batches drawn across the training set (``dataset``, both profiles) or Fast
R-CNN's per-batch-of-images sampling (``image``). Every record stores the
resolved values and lists the reductions under ``rcnn.cpu_reductions``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

PAPER_CROP, PAPER_PADDING, PAPER_PROPOSALS = 224, 16, 2000
FINETUNE_SAMPLING = ("dataset", "image")  # rcnn.finetune_sampling (harness.train.rcnn_sampling)


@dataclass(frozen=True)
class RCNNConfig:
    crop_size: int = 64  # S, warped region side (paper: 224 for VGG16, 227 for AlexNet)
    context_padding: int | None = None  # px of context at the S scale; None: 16 at 224, scaled to S
    feature_layer: str = "fc7"  # pool5 | fc6 | fc7: what the SVMs train on and the cache stores
    cache_dtype: str = "float32"  # float32 | float16 (half the disk)
    cache_dir: str = "cache/features"  # relative to the working directory
    # proposals kept per image (paper: ~2000); None: all that proposals.max_proposals gives
    max_proposals_train: int | None = 200  # fine-tuning and the feature cache
    max_proposals_test: int | None = 300  # test time
    batch_size: int = 256  # crops per CNN forward (feature extraction, test)
    finetune_batch: int = 128  # regions per fine-tuning mini-batch (section 2.3)
    finetune_fg_fraction: float = 0.25  # 32 foreground of 128
    fg_iou: float = 0.5  # fine-tuning foreground; background is IoU in [0, 0.5)
    # dataset: each mini-batch drawn uniformly from every region of the training set (section 2.3);
    # image: from the regions of the batch's images (Fast R-CNN's hierarchical sampling, the ablation)
    finetune_sampling: str = "dataset"
    finetune: bool = True  # False: features of the network as initialised (table 2's "no fine-tuning" rows)
    classifier: str = "svm"  # svm (the paper) | softmax (appendix B ablation)
    svm_c: float = 0.001  # SVM C on features scaled to mean norm 20 (R-CNN code)
    svm_pos_weight: float = 2.0  # loss weight of positives (R-CNN code)
    # negatives: IoU < 0.3 with every box of the class (appendix B; its sweep 0, 0.1, ..., 0.5: 0 keeps only
    # regions that overlap no box of the class)
    svm_neg_iou: float = 0.3
    hard_negative_rounds: int = 3  # mining passes over the cache after the initial fit
    svm_score_thresh: float = -1.0  # keep detections with an SVM margin above this
    bbox_reg: bool = True  # class-specific box regression (section 3.4)
    bbox_reg_lambda: float = 1000.0  # ridge lambda (appendix C)
    bbox_reg_iou: float = 0.6  # regression examples: IoU > 0.6 with a gt box (appendix C)

    def padding(self) -> int:
        """Context padding in pixels at the crop scale (16 px at 224, scaled to ``crop_size``)."""
        if self.context_padding is not None:
            return self.context_padding
        return max(0, round(PAPER_PADDING * self.crop_size / PAPER_CROP))

    def proposals(self, available: int) -> tuple[int, int]:
        """Proposals kept per image ``(train, test)`` when the source gives ``available`` (proposals.max_proposals)."""
        cap = [n if n is not None else available for n in (self.max_proposals_train, self.max_proposals_test)]
        return min(cap[0], available), min(cap[1], available)


# --profile paper: the paper's R-CNN scale
RCNN_PAPER: dict[str, Any] = {
    "rcnn.crop_size": PAPER_CROP,
    "rcnn.context_padding": PAPER_PADDING,
    "rcnn.max_proposals_train": PAPER_PROPOSALS,
    "rcnn.max_proposals_test": PAPER_PROPOSALS,
}

# Fine-tuning from random init on the cpu profile: a higher lr than the paper's 0.001
# (which fine-tunes ImageNet weights); epochs bound the CPU time.
RCNN_TRAIN_DEFAULTS: dict[str, Any] = {"train.epochs": 4, "train.lr": 0.01}


def validate_rcnn(r: RCNNConfig) -> list[str]:
    """Names of invalid ``rcnn.*`` values (the caller raises one ConfigError for all)."""
    checks = {
        "rcnn.crop_size": r.crop_size >= 16,
        "rcnn.context_padding": 0 <= r.padding() < r.crop_size / 2,
        "rcnn.feature_layer": r.feature_layer in ("pool5", "fc6", "fc7"),
        "rcnn.cache_dtype": r.cache_dtype in ("float32", "float16"),
        "rcnn.max_proposals_train": r.max_proposals_train is None or r.max_proposals_train >= 1,
        "rcnn.max_proposals_test": r.max_proposals_test is None or r.max_proposals_test >= 1,
        "rcnn.batch_size": r.batch_size >= 1,
        "rcnn.finetune_batch": r.finetune_batch >= 2,
        "rcnn.finetune_fg_fraction": 0.0 < r.finetune_fg_fraction < 1.0,
        "rcnn.fg_iou": 0.0 < r.fg_iou <= 1.0,
        "rcnn.finetune_sampling": r.finetune_sampling in FINETUNE_SAMPLING,
        "rcnn.classifier": r.classifier in ("svm", "softmax"),
        "rcnn.finetune (the softmax classifier is the fine-tuned layer)": r.finetune or r.classifier == "svm",
        "rcnn.svm_c": r.svm_c > 0,
        "rcnn.svm_pos_weight": r.svm_pos_weight > 0,
        "rcnn.svm_neg_iou": 0.0 <= r.svm_neg_iou <= 1.0,
        "rcnn.hard_negative_rounds": r.hard_negative_rounds >= 0,
        "rcnn.bbox_reg_lambda": r.bbox_reg_lambda >= 0,
        "rcnn.bbox_reg_iou": 0.0 <= r.bbox_reg_iou < 1.0,
    }
    return [k for k, ok in checks.items() if not ok]


def cpu_reductions(r: RCNNConfig, available: int) -> dict[str, dict[str, Any]]:
    """Where this run departs from the paper's scale: ``{key: {"used", "paper"}}``.

    ``available``: proposals the source gives per image (``proposals.max_proposals``).
    """
    paper = {"crop_size": PAPER_CROP, "context_padding": PAPER_PADDING,
             "max_proposals_train": PAPER_PROPOSALS, "max_proposals_test": PAPER_PROPOSALS}
    train, test = r.proposals(available)
    used = {"crop_size": r.crop_size, "context_padding": r.padding(),
            "max_proposals_train": train, "max_proposals_test": test}
    return {k: {"used": used[k], "paper": paper[k]} for k in paper if used[k] != paper[k]}
