"""The papers' tables and ablations as runnable presets (``harness reproduce``).

Each preset lists the rows of one published table as runs: a detector plus
config overrides. Two scales:

- ``paper``: the papers' settings (VGG16-class backbone, 600/1000 images, 2000
  selective-search proposals, full schedules). Needs a GPU, VOC-format data and
  an ImageNet weights file (``--weights``); ``needs`` says so.
- ``cpu``: a documented reduction that runs on 2 CPU cores: the ``tiny``
  backbone from the built-in pre-training (the cpu profile's ``model.init``: ``harness pretrain``'s default
  recipe, cached on first use) on the built-in ``synthetic-hard`` benchmark with a shortened schedule
  (:data:`CPU_BASE`; what it gives up, :data:`CPU_REDUCTIONS`, goes into every record), the cpu profile's
  image and anchor sizes. ``cpu_minutes`` is the expected wall time
  of the whole preset on this project's 2-core machine (measured per detector,
  see README "Reproducing the papers").

A row is a config, not a tag: a run belongs to every preset row whose resolved
config it matches, seeds aside (:func:`row_key`). Rows reuse the resumable sweep
machinery (keyed by the config hash), so a preset started again, or a second
preset sharing a row, skips the runs that already have an ``ok`` record, and
the report shows such a run under every row it matches.

Each preset declares the keys its table varies (``varies``); two rows of one
table differ in no other key, apart from keys one of the two detectors ignores
(tests/test_presets.py checks both scales).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from harness.config import ConfigError, RunConfig, build_config, flatten_dict, to_dict
from harness.config.capabilities import check_capabilities, rules_for
from harness.config.sweep import SweepPoint, config_hash

# The cpu scale: the harder built-in benchmark (synthetic-hard: 12 classes in look-alike pairs, 200 test
# images), selective search on the image as generated (>= 2000 boxes per image, so the proposal-count
# rows differ), 300 proposals per image unless a row varies it, and a shortened schedule.
CPU_BASE: dict[str, Any] = {
    "data.dataset": "synthetic-hard",
    "data.synthetic_hard.train_images": 200,
    "data.synthetic_hard.test_images": 200,
    "train.epochs": 6,
    "proposals.max_proposals": 300,
    "proposals.image_min_size": None,
}
# What the cpu scale gives up to fit `reproduce --all` in about 3 hours on 2 cores, with why; every
# record a preset writes at cpu scale carries these (and its row's own, Row.reductions) as `reductions`.
CPU_REDUCTIONS: dict[str, str] = {
    "data.synthetic_hard.train_images": "200 of synthetic-hard's 400 training images (half the selective-search "
    "precompute and R-CNN feature cache); on the set's first version (objects 10-45 % of the image height) "
    "Faster R-CNN gave 0.324 mAP50 with 200 x 6 epochs vs 0.337 with 400 x 3 epochs (same 600 steps)",
    "train.epochs": "6 epochs (600 steps of 2 images) instead of the cpu profile's 8 (on 400 images): every row "
    "is under-trained alike; the README's synthetic-hard section gives Faster R-CNN's mAP50 at both schedules",
    "model.init": "random init (model.init=random, no --weights): the papers fine-tune ImageNet-pre-trained "
    "networks; the cpu scale's default, the built-in pre-training, beats random init by 18 points mAP50 at this "
    "scale (README Pre-training), and the fine-tuning claims are not testable from random init",
}
# Fast R-CNN and R-CNN (the detectors that read selective search): its test-time cost from the cache
SS_TIMING = ("cache", "selective-search seconds per test image read from each image's cache entry "
    "(measured once, one thread, when `harness proposals` computed it with 2 workers; 0.59 s median on the "
    "test split of synthetic-hard, computed on the otherwise idle 2-core machine) instead of re-timed live in "
    "every run, which cost about 2 min per Fast R-CNN run (200 images x 0.59 s)")
# Per detector, on top of CPU_BASE (key -> (value, why)); R-CNN runs its whole CNN on every warped region.
CPU_DETECTOR: dict[str, dict[str, tuple[Any, str]]] = {
    "fast": {"proposals.test_timing": SS_TIMING},
    "rcnn": {
        "proposals.test_timing": SS_TIMING,
        "train.epochs": (4, "R-CNN fine-tunes 4 epochs (its own cpu default, 400 steps of 128 warped regions, "
                         "about 0.5 s a step on 2 cores), not the 6 of Fast / Faster R-CNN's image batches"),
        "test.max_images": (100, "R-CNN is tested on the first 100 of the 200 test images: it runs the whole "
                            "CNN on each of ~300 warped regions per image (Fast / Faster R-CNN use all 200)"),
    },
}
PAPER_NEEDS = "a CUDA GPU, VOC-format data (--dataset voc:DIR) and ImageNet weights (--weights FILE)"
# cpu-scale wall minutes per run (per training step for alternating / stage-wise rows) on synthetic-hard:
# the means over the complete `reproduce --all` from a fresh clone (the cpu default, built-in pre-training;
# idle 2-core machine, 2026-12-05, 120 ok runs, scene cache on), so that a sum of runs comes out as measured
# (medians in brackets; the times are skewed): Faster R-CNN 0.89 (0.88; 30 runs), Fast R-CNN 1.06 (0.85; 36
# run-steps, the first computes the selective search of every image), R-CNN 1.03 (0.68; 54 runs, 0.32-3.8:
# one that fine-tunes or extracts a new feature cache takes 1.3 or more, most reuse a stored fine-tuning).
# reproduce.jsonl records each invocation's wall time against it.
MINUTES_PER_RUN = {"faster": 0.9, "fast": 1.05, "rcnn": 1.0}


@dataclass(frozen=True)
class Row:
    """One row of our table: a label, a detector, and what differs from the defaults."""

    label: str
    detector: str
    overrides: dict[str, Any] = field(default_factory=dict)
    paper_overrides: dict[str, Any] = field(default_factory=dict)  # only at paper scale
    scheme_steps: int = 1  # 4 for alternating training: the run trains four times
    # published.csv rows this row reproduces, as "method · setting" (or "method" when the setting is empty),
    # each with the test pass whose numbers answer it: "main", "unshared" (alternating's step 2), "svd" or "svm"
    published: dict[str, str] = field(default_factory=dict)
    reductions: dict[str, str] = field(default_factory=dict)  # row-only cpu-scale cuts: key -> why


@dataclass(frozen=True)
class Preset:
    id: str
    paper: str  # as in published.csv's "paper" column
    table: str  # as in published.csv's "table" column
    title: str
    rows: tuple[Row, ...]
    varies: tuple[str, ...] = ()  # the config keys the table varies ("detector" when it compares detectors)
    note: str = ""
    shows_recall: bool = False  # the report adds each row's proposal recall against IoU (a figure about proposals)

    def cpu_minutes(self, seeds: int = 1) -> float:
        return seeds * sum(MINUTES_PER_RUN[r.detector] * r.scheme_steps for r in self.rows)


def expected_minutes(runs: list[tuple[Row, SweepPoint]], done: set[str] = frozenset()) -> tuple[int, int, float]:
    """``(distinct runs, of them not in done, their expected cpu-scale minutes)`` for ``runs`` in one
    results folder: a config shared by several presets' rows runs once, one with an ``ok`` record
    (its key in ``done``) not at all."""
    minutes = {point.key: MINUTES_PER_RUN[row.detector] * row.scheme_steps for row, point in runs}
    todo = [m for key, m in minutes.items() if key not in done]
    return len(minutes), len(todo), sum(todo)


FAST = "Fast R-CNN (ICCV 2015)"
FASTER = "Faster R-CNN (NIPS 2015)"
RCNN = "R-CNN (CVPR 2014)"
ALT = {"train.scheme": "alternating"}

FR = "Faster R-CNN (RPN)"

PRESETS: tuple[Preset, ...] = (
    Preset("fast-table4", FAST, "Table 4", "R-CNN vs Fast R-CNN: train/test time and mAP, with and without SVD", (
        Row("R-CNN", "rcnn", published={"R-CNN": "main"}),
        Row("Fast R-CNN (+ truncated SVD pass)", "fast", {"test.svd": True}, published={
            "Fast R-CNN": "main", "Fast R-CNN · truncated SVD": "svd",
            "Fast R-CNN vs R-CNN": "main", "Fast R-CNN vs R-CNN · truncated SVD": "svd"}),
    ), varies=("detector", "test.svd"),
        note="Backbones S/M/L map to resnet18 / resnet50 / vgg16 at paper scale (--backbone); "
             "the SVD row is a second test pass of the same Fast R-CNN run."),
    Preset("fast-table5", FAST, "Table 5", "Which layers to fine-tune", (
        Row("fine-tune all conv layers", "fast", {"model.freeze_stages": 0}, {"model.freeze_stages": 1},
            published={"Fast R-CNN · fine-tune conv2_1 and up": "main"}),
        Row("freeze the first 2 stages (conv3_1 and up)", "fast", {"model.freeze_stages": 2},
            published={"Fast R-CNN · fine-tune conv3_1 and up": "main"}),
        Row("freeze every conv stage (fc layers only)", "fast", {"model.freeze_stages": 4},
            {"model.freeze_stages": 5}, published={"Fast R-CNN · fine-tune fc6 and up": "main"}),
    ), varies=("model.freeze_stages",),
        note="At cpu scale the frozen stages hold the built-in pre-training's features (a synthetic stand-in for "
             "ImageNet); with --set model.init=random they stay random, and the claim is not testable."),
    Preset("fast-table6", FAST, "Table 6", "Multi-task vs classification-only training", (
        Row("classification only, no box regression", "fast", {"model.cls_only": True}),
        Row("multi-task training, tested without box regression", "fast",
            {"model.cls_only": False, "test.box_regression": False}),
        Row("stage-wise: L_cls, then box regression alone on the frozen net", "fast",
            {"train.scheme": "stagewise"}, scheme_steps=2,
            published={"Fast R-CNN · stage-wise training (bbox reg added after)": "main"}),
        Row("multi-task (L_cls + L_loc), box regression", "fast", {"model.cls_only": False},
            published={"Fast R-CNN · multi-task training with bbox reg": "main"}),
    ), varies=("model.cls_only", "train.scheme", "test.box_regression"),
        note="The second row trains like the fourth and ignores bbox_pred at test (test.box_regression=false)."),
    Preset("fast-table7", FAST, "Table 7", "Multi-scale training and testing (image pyramid) vs one scale", (
        Row("1 scale", "fast"),
        Row("5 scales", "fast", {"data.scales": (154, 184, 220, 276, 384), "data.max_size": 640},
            {"data.scales": (480, 576, 688, 864, 1200), "data.max_size": 2000}),
    ), varies=("data.scales", "data.max_size"),
        note="Training draws one scale per image; testing runs the pyramid and pools each RoI at the scale where "
             "its area is closest to 224^2 (paper) / 72^2 (cpu: 224 scaled like the anchors, 224 x 192 / 600). The "
             "cpu scales are the paper's 480..1200 x 192/600; the published rows are S and M (L was single-scale)."),
    Preset("fast-table8", FAST, "Table 8", "Softmax vs SVMs on Fast R-CNN's own features", (
        Row("Fast R-CNN: softmax (metrics) and SVMs on its fc7 (metrics_svm)", "fast", {"test.svm": True},
            published={"Fast R-CNN · softmax classifier": "main", "Fast R-CNN · SVM classifiers": "svm"}),
        Row("R-CNN, SVMs", "rcnn", published={"R-CNN · SVM classifiers": "main"}),
    ), varies=("detector", "test.svm"),
        note="One Fast R-CNN run records both classifiers: after joint training, R-CNN's SVM trainer (hard-negative "
             "mining, rcnn.svm_* keys) fits per-class SVMs on the trained net's fc7 RoI features of the training "
             "proposals, and the same test images are scored by them (boxes from bbox_pred in both)."),
    Preset("faster-table2", FASTER, "Table 2", "Selective search (2000) vs RPN (300); joint vs alternating", (
        Row("Fast R-CNN + selective search, 2000 proposals", "fast", {"proposals.max_proposals": 2000},
            published={"Fast R-CNN + selective search · 2000 proposals": "main"}),
        Row("Faster R-CNN (RPN 300, approximate joint)", "faster", {"model.rpn_post_nms_top_n_test": 300}),
        Row("Faster R-CNN (RPN 300, 4-step alternating)", "faster", ALT, scheme_steps=4,
            published={f"{FR} · 300 proposals shared": "main"}),
        Row("Fast R-CNN trained on selective search, tested on RPN proposals (ablations)", "fast",
            {"proposals.max_proposals": 2000, "test.rpn_proposals": True}, scheme_steps=2),
    ), varies=("detector", "proposals.max_proposals", "model.rpn_post_nms_top_n_test", "train.scheme",
               "test.rpn_proposals"),
        note="The ablation row trains Fast R-CNN on selective search, then a separate Faster R-CNN whose RPN gives "
             "the test proposals: rpn_proposals.variants holds RPN 100/300/1000, no NMS (6000), no cls (random "
             "order) 100/300/1000, no reg (anchors) 300/1000. EdgeBoxes: its structured-edge model cannot be "
             "fetched here; with EdgeBoxes boxes in a proposal file (README, External proposals), run this "
             "preset's first row with --set proposals.source=file --set proposals.file=edgeboxes.json."),
    Preset("faster-table3", FASTER, "Table 3", "Shared vs unshared convolutional features", (
        Row("4-step alternating: unshared (step 2) and shared (step 4)", "faster", ALT, scheme_steps=4,
            published={f"{FR} · unshared features": "unshared", f"{FR} · shared features": "main"}),
    ), varies=("train.scheme",), note="One run records both: metrics_unshared (after step 2) and metrics (after step 4)."),
    Preset("faster-table5", FASTER, "Table 5", "Timing including proposals", (
        Row("Fast R-CNN + selective search", "fast", published={
            "Fast R-CNN + selective search · total time incl. proposals (K40 GPU)": "main",
            "selective search · proposal time (CPU)": "main"}),
        Row("Faster R-CNN (RPN)", "faster", published={f"{FR} · total time incl. proposals (K40 GPU)": "main"}),
    ), varies=("detector",)),
    Preset("faster-table8", FASTER, "Table 8", "Anchor scales x ratios", tuple(
        Row(label, "faster", {"model.anchor_sizes": sizes, "model.anchor_ratios": ratios},
            {"model.anchor_sizes": tuple(4 * s for s in sizes)},
            published={f"{FR} · {label}": "main"})
        for label, sizes, ratios in (
            ("1 scale (128^2), 1 ratio", (32.0,), (1.0,)),
            ("1 scale (256^2), 1 ratio", (64.0,), (1.0,)),
            ("1 scale (128^2), 3 ratios", (32.0,), (0.5, 1.0, 2.0)),
            ("1 scale (256^2), 3 ratios", (64.0,), (0.5, 1.0, 2.0)),
            ("3 scales, 1 ratio", (32.0, 64.0, 128.0), (1.0,)),
            ("3 scales, 3 ratios", (32.0, 64.0, 128.0), (0.5, 1.0, 2.0)),
        )
    ), varies=("model.anchor_sizes", "model.anchor_ratios"),
        note="Paper-scale anchors are 4x the cpu-scale ones (600 vs 192-pixel images): the paper's 128^2 / "
             "256^2 single-scale rows are 32 / 64 px at cpu scale; 3 scales are 128/256/512 (cpu 32/64/128)."),
    Preset("faster-table9", FASTER, "Table 9", "The RPN loss weight lambda", tuple(
        Row(f"lambda {lam:g}", "faster", {"model.rpn_box_weight": lam / 10},
            published={f"{FR} · lambda {lam:g}": "main"}) for lam in (0.1, 1.0, 10.0, 100.0)
    ), varies=("model.rpn_box_weight",),
        note="model.rpn_box_weight = lambda / 10: our box term is normalised by the 256 sampled anchors, "
             "the paper's by ~2400 anchor locations."),
    Preset("rcnn-table2", RCNN, "Table 2", "R-CNN: layer x fine-tuning x box regression", tuple(
        Row(f"{layer} {'fine-tuned' if ft else 'no fine-tune'}{' + bbox reg' if reg else ''}", "rcnn",
            {"rcnn.feature_layer": layer, "rcnn.finetune": ft, "rcnn.bbox_reg": reg},
            published={f"R-CNN · {layer} {'fine-tuned' if ft else 'no fine-tune'}"
                       f"{' + bbox regression' if reg else ''}": "main"})
        for layer, ft, reg in (
            ("pool5", False, False), ("fc6", False, False), ("fc7", False, False),
            ("pool5", True, False), ("fc6", True, False), ("fc7", True, False), ("fc7", True, True),
        )
    ), varies=("rcnn.feature_layer", "rcnn.finetune", "rcnn.bbox_reg"),
        note="At cpu scale the 'no fine-tune' features are the built-in pre-training's (a synthetic stand-in for "
             "ImageNet, nearer to the detection data than ImageNet is to VOC); from random init they are random "
             "features, and the fine-tuning claim is not testable."),
    Preset("rcnn-appendix-a", RCNN, "Appendix A", "Context padding of the warped region", (
        Row("context padding 0", "rcnn", {"rcnn.context_padding": 0}),
        Row("context padding 16 (at 224; scaled to the crop)", "rcnn"),
    ), varies=("rcnn.context_padding",),
        note="rcnn.context_padding=None (the default) is the paper's 16 px at a 224 crop scaled to rcnn.crop_size "
            "(5 px at the cpu scale's 64-pixel crop); the paper scale uses 16 at 224."),
    Preset("rcnn-appendix-b", RCNN, "Appendix B", "SVM vs softmax; the SVMs' negative IoU threshold", (
        Row("softmax classifier instead of SVMs", "rcnn", {"rcnn.classifier": "softmax"}),
        *(Row(f"SVM negatives below IoU {t:g}", "rcnn", {"rcnn.svm_neg_iou": t}) for t in (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)),
    ), varies=("rcnn.classifier", "rcnn.svm_neg_iou"),
        note="Negatives of class c are regions with IoU < the threshold with every box of c; 0 keeps only regions "
            "that overlap no box of c. The SVM rows differ only in the SVM stage (same fine-tuning, same cache)."),
    Preset("faster-figure2", FASTER, "Figure 2", "Proposal recall against IoU at 300 / 1000 / 2000 proposals", (
        Row("selective search (Fast R-CNN run)", "fast", {"proposals.max_proposals": 2000}),
        Row("RPN (Faster R-CNN run)", "faster"),
    ), varies=("detector", "proposals.max_proposals"),
        note="Also Fast R-CNN Figure 3's recall. Each run records metrics.proposal_recall[source].recall_vs_iou "
            "(test.recall_iou_counts 300/1000/2000; the RPN is asked for that many instead of its test top-N); "
            "the report plots it. The papers publish these as curves, so there is no published value to list.",
        shows_recall=True),
    Preset("proposal-sweep", FAST, "Figure 3", "Test time and mAP vs number of proposals", tuple(
        Row(f"{det} with {n} proposals", det, {"proposals.max_proposals": n,
            # R-CNN otherwise caps its test proposals at rcnn.max_proposals_test (300 on the cpu profile)
            **({"rcnn.max_proposals_test": None} if det == "rcnn" else {})})
        for det in ("fast", "rcnn") for n in (100, 300, 1000, 2000)
    ), varies=("detector", "proposals.max_proposals", "rcnn.max_proposals_test"), shows_recall=True),
)
BY_ID = {p.id: p for p in PRESETS}


def cpu_base(detector: str) -> dict[str, Any]:
    """:data:`CPU_BASE` less the keys ``detector`` refuses (the RPN detector has no proposals.max_proposals),
    plus its :data:`CPU_DETECTOR` values."""
    base = {k: v for k, v in CPU_BASE.items() if not any(r.action == "refuse" for r in rules_for(detector, k))}
    return {**base, **{k: value for k, (value, _) in CPU_DETECTOR.get(detector, {}).items()}}


def resolve(preset: Preset, *, scale: str, seeds: int = 1, extra: dict[str, Any] | None = None) -> list[tuple[Row, SweepPoint]]:
    """Every run of ``preset`` at ``scale`` as validated configs (raises ConfigError)."""
    if scale not in ("cpu", "paper"):
        raise ValueError(f"scale must be cpu or paper, got {scale!r}")
    out = []
    for row in preset.rows:
        for seed in range(seeds):
            overrides = {**(cpu_base(row.detector) if scale == "cpu" else {}), **row.overrides,
                         **(row.paper_overrides if scale == "paper" else {}), **(extra or {}), "seed": seed}
            cfg = build_config(detector=row.detector, profile=scale, overrides=overrides)
            check_capabilities(cfg)
            out.append((row, SweepPoint(overrides, cfg)))
    return out


def reductions(row: Row, config: RunConfig) -> dict[str, str]:
    """What this cpu-scale run of ``row`` gives up, key -> why: the :data:`CPU_REDUCTIONS` its config
    still holds (a ``--dataset`` or ``--weights`` of the invocation lifts theirs) and the row's own."""
    flat = flatten_dict(to_dict(config))
    held = {k: k in flat and flat[k] == v and (not k.startswith("data.synthetic_hard.")
                                                or flat["data.dataset"] == "synthetic-hard")
            for k, v in CPU_BASE.items()}
    held["model.init"] = flat.get("model.init") == "random" and not flat.get("model.weights")
    mine = {k: why for k, (value, why) in CPU_DETECTOR.get(row.detector, {}).items() if flat.get(k) == value}
    return {**{k: why for k, why in CPU_REDUCTIONS.items() if held.get(k) and k not in mine}, **mine,
            **row.reductions}


def row_key(config: dict[str, Any] | RunConfig) -> str:
    """A preset row's identity: the hash of its resolved config with the seed aside (seeds are its runs)."""
    tree = to_dict(config) if isinstance(config, RunConfig) else dict(config)
    tree.pop("seed", None)
    return config_hash(tree)


def row_keys(preset: Preset, *, scale: str, extra: dict[str, Any] | None = None) -> list[tuple[Row, str]]:
    """Each row of ``preset`` at ``scale`` (with the invocation-wide ``extra`` overrides) and its :func:`row_key`."""
    return [(row, row_key(point.config)) for row, point in resolve(preset, scale=scale, extra=extra)]


def check_extra(preset: Preset, extra: dict[str, Any]) -> None:
    """Refuse an invocation-wide override of a key the table's rows set: it would make the rows one run."""
    row_set = set(preset.varies) | {k for r in preset.rows for k in (*r.overrides, *r.paper_overrides)}
    clash = sorted(k for k in extra if k in row_set)
    if clash:
        raise ConfigError(f"{preset.id} varies {', '.join(clash)} row by row: do not set it for the whole preset")
