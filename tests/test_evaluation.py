"""Evaluator tests: tiny hand-built cases whose APs are computed by hand (random cases: test_voc_ap_property.py)."""
from __future__ import annotations

import contextlib
import io
import json
import math

import numpy as np
import pytest
import torch
from pycocotools.cocoeval import COCOeval

from harness.data.base import BACKGROUND, make_target
from harness.evaluation.coco import (
    coco_ground_truth,
    to_coco_results,
    write_coco_results,
)
from harness.evaluation.detection import evaluate_detections
from harness.evaluation.voc import voc_ap, voc_eval_class

CLASSES = (BACKGROUND, "cat", "dog")
# Four disjoint 40x40 boxes (area 1600: COCO "medium") and one far-off box.
A = [0.0, 0.0, 40.0, 40.0]
B = [50.0, 0.0, 90.0, 40.0]
C = [0.0, 50.0, 40.0, 90.0]
D = [50.0, 50.0, 90.0, 90.0]
FAR = [150.0, 150.0, 190.0, 190.0]


def gt(boxes, labels, image_id=0, difficult=None, iscrowd=None):
    return make_target(
        boxes, labels, image_id=image_id, orig_size=(200, 200), difficult=difficult, iscrowd=iscrowd
    )


def pred(boxes, labels, scores):
    return {
        "boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor(labels, dtype=torch.int64),
        "scores": torch.tensor(scores, dtype=torch.float32),
    }


def one_class(det_boxes, det_scores, gt_boxes, gt_ignore=None):
    """voc_eval_class on a single image."""
    gt_ignore = [False] * len(gt_boxes) if gt_ignore is None else gt_ignore
    return voc_eval_class(
        [np.array(det_boxes).reshape(-1, 4)],
        [np.array(det_scores)],
        [np.array(gt_boxes).reshape(-1, 4)],
        [np.array(gt_ignore, dtype=bool)],
    )


# --------------------------------------------------------------------------- voc_ap


def test_voc_ap_hand_values():
    rec, prec = np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.5, 2 / 3])
    # area: 0.5 * 1 + 0.5 * 2/3; 11-point: t=0..0.5 -> 1 (6 points), t=0.6..1 -> 2/3 (5 points)
    assert voc_ap(rec, prec, use_07_metric=False) == pytest.approx(5 / 6)
    assert voc_ap(rec, prec, use_07_metric=True) == pytest.approx(28 / 33)
    assert voc_ap(np.zeros(0), np.zeros(0), use_07_metric=True) == 0.0
    assert voc_ap(np.zeros(0), np.zeros(0), use_07_metric=False) == 0.0


# --------------------------------------------------------------------------- VOC matching


def test_false_positive_ranked_first():
    r = one_class([FAR, A], [0.9, 0.8], [A])
    np.testing.assert_allclose(r.precision, [0.0, 0.5])
    np.testing.assert_allclose(r.recall, [0.0, 1.0])
    # Envelope is 0.5 everywhere up to recall 1: both metrics give 0.5.
    assert r.ap50_area == pytest.approx(0.5)
    assert r.ap50_voc07 == pytest.approx(0.5)


def test_11_point_and_area_differ_on_partial_recall():
    # Two gt, one found with precision 1: area = 0.5, 11-point = 6/11 (t = 0 .. 0.5).
    r = one_class([A], [0.9], [A, B])
    assert r.ap50_area == pytest.approx(0.5)
    assert r.ap50_voc07 == pytest.approx(6 / 11)


def test_duplicate_detection_is_false_positive():
    r = one_class([A, A, B], [0.9, 0.8, 0.7], [A, B])
    assert r.tp.tolist() == [True, False, True]
    assert r.fp.tolist() == [False, True, False]
    np.testing.assert_allclose(r.precision, [1.0, 0.5, 2 / 3])
    assert r.ap50_area == pytest.approx(5 / 6)
    assert r.ap50_voc07 == pytest.approx(28 / 33)


def test_iou_threshold_is_inclusive():
    # [0,0,40,20] vs A: IoU = 800 / 1600 = 0.5 exactly -> TP (devkit uses >=).
    r = one_class([[0.0, 0.0, 40.0, 20.0]], [0.9], [A])
    assert r.tp.tolist() == [True]


def test_difficult_detection_is_neither_tp_nor_fp():
    base = one_class([A, FAR, B], [0.9, 0.7, 0.6], [A, B, C], [False, False, True])
    with_difficult = one_class([A, C, FAR, B], [0.9, 0.8, 0.7, 0.6], [A, B, C], [False, False, True])
    assert with_difficult.tp.tolist() == [True, False, False, True]
    assert with_difficult.fp.tolist() == [False, False, True, False]
    assert with_difficult.num_gt == 2
    assert with_difficult.ap50_area == pytest.approx(base.ap50_area)
    assert with_difficult.ap50_voc07 == pytest.approx(base.ap50_voc07)
    # precision [1, 1/2, 2/3] at recall [1/2, 1/2, 1]
    assert base.ap50_area == pytest.approx(5 / 6)


def test_missed_difficult_does_not_lower_recall():
    r = one_class([A], [0.9], [A, C], [False, True])
    assert r.num_gt == 1
    np.testing.assert_allclose(r.recall, [1.0])
    assert r.ap50_area == pytest.approx(1.0)
    assert r.ap50_voc07 == pytest.approx(1.0)


def test_ties_are_ranked_stably():
    # Equal scores: image order then detection order decides (FP before TP here).
    r = one_class([FAR, A], [0.5, 0.5], [A])
    assert r.fp.tolist() == [True, False]


# --------------------------------------------------------------------------- evaluate_detections


def test_perfect_detections():
    gts = [gt([A, B], [1, 2], image_id=0), gt([C], [1], image_id=7)]
    preds = [pred([A, B], [1, 2], [0.9, 0.8]), pred([C], [1], [0.7])]
    out = evaluate_detections(preds, gts, CLASSES)
    assert out["map50_voc07"] == pytest.approx(1.0)
    assert out["map50_area"] == pytest.approx(1.0)
    assert out["coco_ap50"] == pytest.approx(1.0)
    assert out["coco_ap"] == pytest.approx(1.0)
    assert out["coco_ap_medium"] == pytest.approx(1.0)
    assert out["coco_ap_small"] is None and out["coco_ap_large"] is None  # no gt in those ranges
    assert set(out["per_class"]) == {"cat", "dog"}
    expected_cat = {"ap50_voc07": 1.0, "ap50_area": 1.0, "num_gt": 2, "num_det": 2}
    assert out["per_class"]["cat"] == pytest.approx(expected_cat)
    assert set(out["pr_curves"]) == {"cat", "dog"}
    json.dumps(out, allow_nan=False)


def test_numpy_inputs_and_python_floats():
    gts = [gt([A], [1])]
    preds = [
        {"boxes": np.array([A], np.float32), "labels": np.array([1]), "scores": np.array([0.5], np.float32)}
    ]
    out = evaluate_detections(preds, gts, CLASSES)
    assert type(out["map50_area"]) is float and type(out["coco_ap"]) is float
    assert out["map50_area"] == pytest.approx(1.0)


def test_agrees_with_pycocotools_ap50():
    # cat: 3 gt over 2 images; ranked TP, FP, TP (one gt missed):
    #   recall [1/3, 1/3, 2/3], precision [1, 1/2, 2/3].
    #   area AP = 1/3 + 1/3 * 2/3 = 5/9; COCO 101-point: 34 thresholds (0..0.33) at 1,
    #   33 thresholds (0.34..0.66) at 2/3 -> 56/101.
    # dog: one perfect detection -> 1 for both.
    gts = [gt([A, B, D], [1, 1, 2], image_id=1), gt([C], [1], image_id=2)]
    preds = [pred([A, FAR, D], [1, 1, 2], [0.9, 0.8, 0.5]), pred([C], [1], [0.7])]
    out = evaluate_detections(preds, gts, CLASSES)
    assert out["per_class"]["cat"]["ap50_area"] == pytest.approx(5 / 9)
    assert out["map50_area"] == pytest.approx((5 / 9 + 1) / 2)
    assert out["coco_ap50"] == pytest.approx((56 / 101 + 1) / 2, abs=1e-9)
    assert abs(out["map50_area"] - out["coco_ap50"]) < 1e-2
    # One 11-point check on the same curve: t=0..0.3 -> 1 (4 points), 0.4..0.6 -> 2/3 (3 points).
    assert out["per_class"]["cat"]["ap50_voc07"] == pytest.approx((4 + 2) / 11)


def test_difficult_gt_is_crowd_for_coco():
    gts = [gt([A, B], [1, 1], difficult=[False, True])]
    # Detection on the difficult box is ignored by both metrics.
    preds = [pred([A, B], [1, 1], [0.9, 0.95])]
    out = evaluate_detections(preds, gts, CLASSES)
    assert out["per_class"]["cat"]["num_gt"] == 1
    assert out["map50_area"] == pytest.approx(1.0)
    assert out["coco_ap50"] == pytest.approx(1.0)
    coco = coco_ground_truth(gts, CLASSES)
    assert [a["iscrowd"] for a in coco.dataset["annotations"]] == [0, 1]


def test_crowd_gt_is_ignored_by_voc():
    gts = [gt([A, B], [1, 1], iscrowd=[False, True])]
    preds = [pred([B, A], [1, 1], [0.95, 0.9])]
    out = evaluate_detections(preds, gts, CLASSES)
    assert out["per_class"]["cat"]["num_gt"] == 1
    assert out["map50_area"] == pytest.approx(1.0)
    assert out["coco_ap50"] == pytest.approx(1.0)


def test_no_detections():
    gts = [gt([A], [1], image_id=0), gt(np.zeros((0, 4)), [], image_id=1)]
    empty = pred(np.zeros((0, 4)), [], [])
    out = evaluate_detections([empty, empty], gts, CLASSES)
    assert out["map50_voc07"] == 0.0 and out["map50_area"] == 0.0
    assert out["coco_ap"] == 0.0 and out["coco_ap50"] == 0.0 and out["coco_ap_medium"] == 0.0
    assert out["per_class"]["cat"]["ap50_area"] == 0.0
    assert out["pr_curves"]["cat"] == {"recall": [], "precision": []}
    json.dumps(out, allow_nan=False)


def test_class_without_gt_is_excluded_from_mean():
    gts = [gt([A], [1])]
    preds = [pred([A, B], [1, 2], [0.9, 0.8])]  # a dog false positive, but no dog gt
    out = evaluate_detections(preds, gts, CLASSES)
    assert out["per_class"]["dog"] == {"ap50_voc07": None, "ap50_area": None, "num_gt": 0, "num_det": 1}
    assert out["classes_without_gt"] == ["dog"]
    assert out["map50_area"] == pytest.approx(1.0) and out["map50_voc07"] == pytest.approx(1.0)
    assert not math.isnan(out["coco_ap"])
    json.dumps(out, allow_nan=False)


def test_no_gt_at_all():
    gts = [gt(np.zeros((0, 4)), [], image_id=3)]
    out = evaluate_detections([pred([A], [1], [0.9])], gts, CLASSES)
    assert out["map50_area"] is None and out["coco_ap"] is None
    json.dumps(out, allow_nan=False)


def test_bad_inputs_raise():
    gts = [gt([A], [1])]
    with pytest.raises(ValueError):
        evaluate_detections([pred([A], [3], [0.9])], gts, CLASSES)
    with pytest.raises(ValueError):
        evaluate_detections([], gts, CLASSES)


def test_pr_curves_downsampled():
    n = 500
    boxes = [[float(i), 0.0, i + 10.0, 10.0] for i in range(0, 20 * n, 20)]
    gts = [gt(boxes, [1] * n)]
    preds = [pred(boxes, [1] * n, np.linspace(1, 0.1, n).tolist())]
    curve = evaluate_detections(preds, gts, CLASSES)["pr_curves"]["cat"]
    assert len(curve["recall"]) == len(curve["precision"]) == 101
    assert curve["recall"][0] == pytest.approx(1 / n) and curve["recall"][-1] == 1.0


def test_pr_curve_points_are_rounded_for_plots():
    """Full float digits made the curves most of a run record; 4 decimals are far below a plot's resolution."""
    n = 300  # recall k/300: no short decimal expansion
    boxes = [[float(i), 0.0, i + 10.0, 10.0] for i in range(0, 20 * n, 20)]
    gts = [gt(boxes, [1] * n)]
    preds = [pred(boxes, [1] * n, np.linspace(1, 0.1, n).tolist())]
    recall = evaluate_detections(preds, gts, CLASSES)["pr_curves"]["cat"]["recall"]
    assert all(v == round(v, 4) for v in recall)
    assert recall[1:4] == pytest.approx([k / n for k in (4, 7, 10)], abs=5e-5)  # to 4 decimals, no coarser


# --------------------------------------------------------------------------- COCO results


def test_label_to_category_and_results_format():
    gts = [gt([A], [2], image_id=5)]
    preds = [pred([[1.0, 2.0, 11.0, 22.0]], [2], [0.5])]
    res = to_coco_results(preds, gts, {1: 17, 2: 42})
    assert res == [{"image_id": 5, "category_id": 42, "bbox": [1.0, 2.0, 10.0, 20.0], "score": 0.5}]
    out = evaluate_detections([pred([A], [2], [0.5])], gts, CLASSES, label_to_category={1: 17, 2: 42})
    assert out["coco_ap50"] == pytest.approx(1.0)


def test_write_coco_results_round_trip(tmp_path):
    """The written file, loaded back into COCOeval, gives the COCO APs worked out by hand.

    cat: gt A (image 0), C (image 1); detections A 0.9, C 0.7 exact (IoU 1), FAR 0.3 (FP) ranked last:
    precision 1 up to recall 1 at every IoU threshold -> AP 1 at all ten.
    dog: gt B; one detection of IoU 40 * 29 / 1600 = 0.725 -> a match at the thresholds
    .50 .55 .60 .65 .70 and none at .75 .. .95 -> AP 5 / 10.
    All gt are 40 x 40 (COCO "medium"). Means over the two classes: AP 0.75, AP50 1, AP75 0.5.
    """
    gts = [gt([A, B], [1, 2], image_id=0), gt([C], [1], image_id=1)]
    b_iou_725 = [50.0, 0.0, 90.0, 29.0]
    preds = [pred([A, b_iou_725, FAR], [1, 2, 1], [0.9, 0.8, 0.3]), pred([C], [1], [0.7])]
    path = write_coco_results(tmp_path / "sub" / "dets.json", preds, gts)
    assert path.exists() and [p.name for p in path.parent.iterdir()] == ["dets.json"]
    assert json.loads(path.read_text()) == to_coco_results(preds, gts)
    coco_gt = coco_ground_truth(gts, CLASSES)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes(str(path))
        ev = COCOeval(coco_gt, coco_dt, iouType="bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    assert ev.stats[:3] == pytest.approx([0.75, 1.0, 0.5])
    out = evaluate_detections(preds, gts, CLASSES)
    assert (out["coco_ap"], out["coco_ap50"], out["coco_ap75"]) == pytest.approx((0.75, 1.0, 0.5))
    assert out["coco_ap_medium"] == pytest.approx(0.75)
    assert out["coco_ap_small"] is None and out["coco_ap_large"] is None
    # at IoU 0.5 every class is found at precision 1: VOC's APs say the same as COCO's AP50
    assert out["map50_area"] == pytest.approx(1.0) and out["map50_voc07"] == pytest.approx(1.0)
