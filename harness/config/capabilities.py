"""What each detector does with each config key: honoured, ignored (harmless), or refused.

One table, :data:`RULES`, for every key a detector (or a scheme) does not use.
A ``refuse`` rule stops a run (:func:`check_capabilities`, called by the
runner's ``check_run`` and before any data or training, by sweeps and presets
when they resolve their configs: a :class:`ConfigError`, exit 2) when the key
is set away from that detector's default (at either profile): a user who sets it would believe it
changed the run. An ``ignore`` rule documents a key the detector does not read
but whose value cannot mislead (a cache folder, a selective-search setting on
the RPN detector...). Every key not named here is honoured by every detector.
The detector × option matrix test (tests/test_capabilities.py) checks each
rule, and the preset config-diff test (tests/test_presets.py) exempts the
keys a detector does not read from "rows differ only in the method".

Test passes that a detector cannot run (``test.svd`` on R-CNN) are refused by
the pass's own check (:mod:`harness.evaluation.passes`); pairs of detector and
scheme by the fit table (:mod:`harness.train.schemes`); both are listed here
for the matrix as ``elsewhere``.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

ALL = ("faster", "fast", "rcnn")


@dataclass(frozen=True)
class Rule:
    keys: tuple[str, ...]  # dotted keys, or "prefix*" for every key that starts with the prefix
    detectors: tuple[str, ...]
    action: str  # "refuse" | "ignore" | "elsewhere" (refused by a test pass's or the fit table's own check)
    reason: str
    applies: Callable[[Any], bool] = lambda cfg: True  # e.g. only for some schemes

    def covers(self, key: str) -> bool:
        return any(key == k or (k.endswith("*") and key.startswith(k[:-1])) for k in self.keys)


# what the tables vary: setting them for a detector without an RPN / a multi-task head would mislead
_RPN_METHOD = ("model.anchor_sizes", "model.anchor_ratios", "model.rpn_box_weight")
# sampling and speed knobs of a part the detector lacks: harmless, and often in one --set list for every detector
_RPN_KNOBS = ("model.rpn_fg_iou", "model.rpn_bg_iou", "model.rpn_batch_size", "model.rpn_positive_fraction",
              "model.rpn_pre_nms_top_n_*", "model.rpn_post_nms_top_n_*", "model.rpn_nms_thresh",
              "model.rpn_ignore_cross_boundary")
_ROI_KNOBS = ("model.roi_batch_size", "model.roi_positive_fraction", "model.roi_fg_iou", "model.roi_bg_iou_high",
              "model.roi_bg_iou_low", "model.pooler")
_SS = ("proposals.mode", "proposals.image_min_size", "proposals.image_max_size", "proposals.box_min_size",
       "proposals.cache_dir", "proposals.workers", "proposals.test_timing")

RULES: tuple[Rule, ...] = (
    Rule(_RPN_METHOD, ("fast", "rcnn"), "refuse",
         "anchors and the RPN loss weight configure Faster R-CNN's RPN; this detector takes its proposals from "
         "proposals.* (selective search or a file)"),
    Rule(_RPN_KNOBS, ("fast", "rcnn"), "ignore", "RPN sampling and proposal counts: no RPN to apply them to"),
    Rule(("proposals.source", "proposals.file", "proposals.max_proposals"), ("faster",), "refuse",
         "Faster R-CNN's proposals come from its RPN: set model.rpn_post_nms_top_n_test (and _train) for their "
         "number; proposals.* feed Fast R-CNN and R-CNN"),
    Rule(_SS, ("faster",), "ignore", "selective-search settings and caches; the RPN does not read them (the paper "
         "profile sets some for every detector)"),
    Rule(("rcnn.*",), ("faster",), "refuse", "rcnn.* configure R-CNN (--detector rcnn) only"),
    Rule(("rcnn.*",), ("fast",), "refuse", "rcnn.* configure R-CNN, and Fast R-CNN's SVM pass (test.svm=true) only",
         lambda cfg: not cfg.test.svm),
    Rule(("model.box_weight",), ("rcnn",), "refuse",
         "the multi-task loss weight of Fast / Faster R-CNN; R-CNN's box regression is a separate ridge fit "
         "(rcnn.bbox_reg, rcnn.bbox_reg_lambda)"),
    Rule(_ROI_KNOBS, ("rcnn",), "ignore",
         "RoI sampling and pooling of Fast / Faster R-CNN; R-CNN fine-tunes on rcnn.finetune_batch warped regions "
         "(rcnn.finetune_fg_fraction, rcnn.fg_iou)"),
    Rule(("model.cls_only",), ("rcnn",), "refuse",
         "R-CNN has no multi-task head: rcnn.bbox_reg=false drops its box regression"),
    Rule(("model.score_thresh",), ("rcnn",), "ignore",
         "read only with rcnn.classifier=softmax (SVM scores use rcnn.svm_score_thresh)"),
    Rule(("train.box_stage_epochs",), ALL, "refuse",
         "the box-regression stage of train.scheme=stagewise only", lambda cfg: cfg.train.scheme != "stagewise"),
    Rule(("test.svd_ranks",), ALL, "refuse", "ranks of the test.svd pass: set test.svd=true",
         lambda cfg: not cfg.test.svd),
    Rule(("train.amp", "test.amp"), ("rcnn",), "elsewhere", "refused by validate(): R-CNN runs in float32"),
    Rule(("test.svd",), ("rcnn",), "elsewhere", "refused by the svd test pass's check: R-CNN has no RoI head"),
    Rule(("data.scales",), ("faster", "rcnn"), "elsewhere",
         "refused by validate(): the image pyramid (Fast R-CNN Table 7) is Fast R-CNN's"),
    Rule(("model.rpn_test_nms", "model.rpn_test_scores", "model.rpn_test_regression"), ("fast", "rcnn"), "elsewhere",
         "refused by validate(): test-time switches of an RPN (Faster R-CNN's, or the one test.rpn_proposals trains)",
         lambda cfg: not cfg.test.rpn_proposals),
    Rule(("test.box_regression",), ("rcnn",), "elsewhere",
         "refused by validate(): R-CNN's box regression is rcnn.bbox_reg"),
    Rule(("train.scheme",), ALL, "elsewhere", "a (detector, scheme) pair without a fit function is refused by "
         "the fit table (harness.train.schemes)"),
)


def _flat(cfg: Any, prefix: str = "") -> dict[str, Any]:
    """A config dataclass as ``{dotted key: value}`` (no import of harness.config: it imports this module)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            out.update(_flat(value, f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = value
    return out


def rules_for(detector: str, key: str, cfg: Any = None) -> list[Rule]:
    return [r for r in RULES if detector in r.detectors and r.covers(key) and (cfg is None or r.applies(cfg))]


def unused_keys(cfg: Any) -> dict[str, str]:
    """Keys ``cfg``'s detector does not read in this config (refused when set, or ignored), with the reason."""
    out = {}
    for key in _flat(cfg):
        for r in rules_for(cfg.detector, key, cfg):
            if r.action in ("refuse", "ignore"):
                out[key] = r.reason
    return out


def refusal(cfg: Any, defaults: list[Any]) -> str | None:
    """Why ``cfg`` is refused (validate() raises it as a ConfigError), or None: every key it sets away from all of
    ``defaults`` (the detector's default at each profile) that a ``refuse`` rule names for its detector."""
    ours, bases = _flat(cfg), [_flat(d) for d in defaults]
    bad: dict[str, list[str]] = {}
    for key, value in ours.items():
        if any(value == base.get(key) for base in bases):
            continue
        for r in rules_for(cfg.detector, key, cfg):
            if r.action == "refuse":
                bad.setdefault(r.reason, []).append(f"{key}={value}")
    if not bad:
        return None
    parts = [f"{', '.join(keys)}: {reason}" for reason, keys in bad.items()]
    return f"--detector {cfg.detector} cannot honour " + "; ".join(parts)


def check_capabilities(cfg: Any) -> None:
    """Raise :class:`ConfigError` when ``cfg`` sets a key its detector cannot honour (:func:`refusal`)."""
    from harness.config import PROFILES, ConfigError, detector_default

    refused = refusal(cfg, [detector_default(cfg.detector, p) for p in PROFILES])
    if refused:
        raise ConfigError(refused)
