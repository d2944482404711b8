"""VOC AP (harness/evaluation/detection.py) against a reference written here from the VOC devkit's definition.

The reference follows VOCdevkit's ``VOCevaldet.m`` / ``VOCap.m`` step by step, in
plain Python, sharing no code with the harness:

- per class, all detections of all images sorted by descending score (ties: image
  order, then detection order, as a stable sort gives);
- each detection takes the gt box of its image with the largest IoU, over *all*
  of the image's gt boxes of the class (matched or not, difficult or not); if that
  IoU >= 0.5: a difficult gt makes the detection neither TP nor FP, an unmatched
  gt makes it TP (and marks the gt), an already matched gt makes it FP; else FP;
- recall = cumulative TP / number of non-difficult gt; precision = cumulative
  TP / cumulative (TP + FP), one entry per ranked detection (the devkit keeps the
  entries of ignored detections; evaluation.py drops them, which must not matter);
- 11-point AP (VOC2007): mean over t = 0, 0.1, ..., 1 of the largest precision at
  recall >= t (0 if none);
- area AP (VOC2010+): the precision envelope (at each recall level, the largest
  precision at that or any higher recall) integrated over the recall steps.

IoU uses this project's continuous xyxy pixels: area = (x2 - x1) * (y2 - y1), no
"+1" as in the devkit's integer-pixel boxes.

Boxes are drawn on an integer grid, so exact IoU = 0.5 ties (and equal scores)
occur in the random trials, testing the inclusive threshold and the tie order.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from harness.data.base import BACKGROUND, make_target
from harness.evaluation.detection import evaluate_detections
from harness.evaluation.voc import voc_ap, voc_eval_class

TRIALS = 200
IOU_THRESHOLD = 0.5
# The 11 recall thresholds as py-faster-rcnn's voc_eval takes them (np.arange(0, 1.1, 0.1), whose
# elements are k * 0.1 in floating point: 0.3 is 0.30000000000000004); evaluation.py documents
# this choice. Written out independently here.
ELEVEN_POINTS = [k * 0.1 for k in range(11)]


# --------------------------------------------------------------------------- the reference


def ref_iou(a, b):
    ix = min(a[2], b[2]) - max(a[0], b[0])
    iy = min(a[3], b[3]) - max(a[1], b[1])
    if ix <= 0 or iy <= 0:
        return 0.0
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def ref_voc_eval(dets, gts):
    """One class. ``dets``: per image, a list of (box, score); ``gts``: per image, a list of (box, difficult).

    Returns ``(ap_11_point, ap_area, npos)``; both APs are None when there is no non-difficult gt.
    """
    ranked = []  # (score, image, index-in-image, box)
    for image, image_dets in enumerate(dets):
        for index, (box, score) in enumerate(image_dets):
            ranked.append((score, image, index, box))
    ranked.sort(key=lambda d: (-d[0], d[1], d[2]))  # descending score; ties: image, then detection order
    npos = sum(1 for image_gts in gts for _, difficult in image_gts if not difficult)
    detected = [[False] * len(image_gts) for image_gts in gts]
    tp, fp = [], []
    for _, image, _, box in ranked:
        ovmax, jmax = -1.0, -1
        for j, (gt_box, _) in enumerate(gts[image]):
            overlap = ref_iou(box, gt_box)
            if overlap > ovmax:  # the first of equal maxima, as MATLAB's max and numpy's argmax
                ovmax, jmax = overlap, j
        if ovmax >= IOU_THRESHOLD:
            if gts[image][jmax][1]:  # difficult: neither
                tp.append(0), fp.append(0)
            elif not detected[image][jmax]:
                detected[image][jmax] = True
                tp.append(1), fp.append(0)
            else:  # duplicate
                tp.append(0), fp.append(1)
        else:
            tp.append(0), fp.append(1)
    if npos == 0:
        return None, None, 0
    recall, precision = [], []
    ctp = cfp = 0
    for t, f in zip(tp, fp):
        ctp, cfp = ctp + t, cfp + f
        recall.append(ctp / npos)
        precision.append(ctp / (ctp + cfp) if ctp + cfp else 0.0)  # 0/0 only at recall 0: no effect

    ap11 = 0.0
    for t in ELEVEN_POINTS:
        reached = [p for r, p in zip(recall, precision) if r >= t]
        ap11 += (max(reached) if reached else 0.0) / 11

    # area: for each distinct recall level, the envelope precision, times the recall step to it
    ap_area, previous = 0.0, 0.0
    for level in sorted(set(recall)):
        if level == previous:
            continue
        envelope = max(p for r, p in zip(recall, precision) if r >= level)
        ap_area += (level - previous) * envelope
        previous = level
    return ap11, ap_area, npos


# --------------------------------------------------------------------------- random cases


def random_box(rng, size=24):
    x1, y1 = (int(v) for v in rng.integers(0, size - 2, 2))
    return [float(x1), float(y1), float(rng.integers(x1 + 2, size + 1)), float(rng.integers(y1 + 2, size + 1))]


def near_box(rng, box):
    """A box near ``box`` (integer shifts of its edges): IoU anywhere from low to 1, often near 0.5."""
    x1, y1, x2, y2 = (int(v) for v in box)
    shift = rng.integers(-3, 4, 4)
    nx1, ny1 = x1 + shift[0], y1 + shift[1]
    nx2, ny2 = max(nx1 + 1, x2 + shift[2]), max(ny1 + 1, y2 + shift[3])
    return [float(nx1), float(ny1), float(nx2), float(ny2)]


def random_class_case(rng):
    """Per image: gt as (box, difficult), detections as (box, score): hits, near misses, duplicates, noise."""
    n_images = int(rng.integers(1, 5))
    quantized = rng.random() < 0.3  # a few score levels only: many ties
    gts, dets = [], []
    for _ in range(n_images):
        image_gts = [(random_box(rng), bool(rng.random() < 0.25)) for _ in range(int(rng.integers(0, 6)))]
        image_dets = []
        for box, _ in image_gts:
            for _ in range(int(rng.integers(0, 3))):  # 0, 1 or 2 (a duplicate) detections near each gt
                image_dets.append(near_box(rng, box))
        image_dets += [random_box(rng) for _ in range(int(rng.integers(0, 4)))]
        order = rng.permutation(len(image_dets))
        scores = rng.integers(0, 4, len(image_dets)) / 4 if quantized else rng.random(len(image_dets))
        dets.append([(image_dets[i], float(s)) for i, s in zip(order, scores)])
        gts.append(image_gts)
    return dets, gts


def harness_voc_eval(dets, gts):
    return voc_eval_class(
        [np.array([b for b, _ in d], dtype=np.float64).reshape(-1, 4) for d in dets],
        [np.array([s for _, s in d], dtype=np.float64) for d in dets],
        [np.array([b for b, _ in g], dtype=np.float64).reshape(-1, 4) for g in gts],
        [np.array([diff for _, diff in g], dtype=bool) for g in gts],
    )


# --------------------------------------------------------------------------- tests


def test_reference_on_a_hand_case():
    """The reference itself, on a case computed by hand (so a wrong reference cannot pass silently).

    gt: A, B non-difficult, C difficult. Ranked: A (TP), C (ignored), FAR (FP), A again (duplicate, FP), B (TP):
    counted curve recall [1/2, 1/2, 1/2, 1], precision [1, 1/2, 1/3, 1/2].
    area = 1/2 * 1 + 1/2 * 1/2 = 3/4; 11-point: t = 0 .. 0.5 -> 1 (6), t = 0.6 .. 1 -> 1/2 (5) = 8.5/11.
    """
    a, b, c, far = [0, 0, 10, 10], [20, 0, 30, 10], [0, 20, 10, 30], [40, 40, 50, 50]
    dets = [[(a, 0.9), (c, 0.8), (far, 0.7), ([0, 0, 10, 9], 0.6), (b, 0.5)]]
    gts = [[(a, False), (b, False), (c, True)]]
    ap11, ap_area, npos = ref_voc_eval(dets, gts)
    assert npos == 2 and ap_area == pytest.approx(0.75) and ap11 == pytest.approx(8.5 / 11)
    assert ref_iou([0, 0, 40, 20], [0, 0, 40, 40]) == 0.5  # continuous pixels, no +1
    assert ref_voc_eval([[]], [[(a, True)]]) == (None, None, 0)


def test_voc_eval_class_matches_the_devkit_reference_on_random_cases():
    rng = np.random.default_rng(2026)
    exact_half = with_difficult = 0
    for trial in range(TRIALS):
        dets, gts = random_class_case(rng)
        ap11, ap_area, npos = ref_voc_eval(dets, gts)
        got = harness_voc_eval(dets, gts)
        case = f"trial {trial}: dets={dets} gts={gts}"
        assert got.num_gt == npos, case
        assert got.num_det == sum(len(d) for d in dets), case
        if npos == 0:
            assert got.ap50_voc07 is None and got.ap50_area is None, case
        else:
            assert got.ap50_voc07 == pytest.approx(ap11, abs=1e-12), case
            assert got.ap50_area == pytest.approx(ap_area, abs=1e-12), case
        with_difficult += any(diff for g in gts for _, diff in g)
        exact_half += any(ref_iou(b, gb) == 0.5 for d, g in zip(dets, gts) for b, _ in d for gb, _ in g)
    # the random cases do reach the corners this test is about
    assert with_difficult > TRIALS // 4 and exact_half > 10, (with_difficult, exact_half)


def test_voc_ap_matches_the_reference_on_random_curves():
    """``voc_ap`` alone on arbitrary curves: non-decreasing recall with repeats, any precision."""
    rng = np.random.default_rng(7)
    for _ in range(TRIALS):
        npos = int(rng.integers(1, 12))
        hits = rng.random(int(rng.integers(1, 25))) < 0.5
        tp = np.cumsum(hits)
        recall = tp / npos
        recall = np.minimum(recall, 1.0)
        precision = rng.random(recall.shape[0])
        for use_07, index in ((True, 0), (False, 1)):
            expected = _ref_ap_from_curve(recall.tolist(), precision.tolist())[index]
            assert voc_ap(recall, precision, use_07_metric=use_07) == pytest.approx(expected, abs=1e-12)


def _ref_ap_from_curve(recall, precision):
    ap11 = sum(max([p for r, p in zip(recall, precision) if r >= t], default=0.0) for t in ELEVEN_POINTS) / 11
    ap_area, previous = 0.0, 0.0
    for level in sorted(set(recall)):
        if level > previous:
            ap_area += (level - previous) * max(p for r, p in zip(recall, precision) if r >= level)
            previous = level
    return ap11, ap_area


def test_evaluate_detections_means_the_reference_aps_over_classes():
    """The whole VOC path (labels split into classes, difficult and crowd ignored, mean over classes with gt)."""
    classes = (BACKGROUND, "a", "b")
    rng = np.random.default_rng(11)
    for trial in range(30):
        per_class = [random_class_case(rng) for _ in classes[1:]]
        n_images = max(len(dets) for dets, _ in per_class)
        preds, targets = [], []
        for image in range(n_images):
            boxes, labels, scores, gt_boxes, gt_labels, difficult = [], [], [], [], [], []
            for k, (dets, gts) in enumerate(per_class, start=1):
                if image < len(dets):
                    boxes += [b for b, _ in dets[image]]
                    scores += [s for _, s in dets[image]]
                    labels += [k] * len(dets[image])
                    gt_boxes += [b for b, _ in gts[image]]
                    difficult += [d for _, d in gts[image]]
                    gt_labels += [k] * len(gts[image])
            preds.append({"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                          "labels": torch.tensor(labels, dtype=torch.int64),
                          "scores": torch.tensor(scores, dtype=torch.float64)})
            # half the ignored boxes as VOC difficult, half as COCO crowd: the VOC side ignores both
            flags = np.array(difficult, dtype=bool)
            crowd = flags & (rng.random(flags.shape[0]) < 0.5)
            targets.append(make_target(torch.tensor(gt_boxes, dtype=torch.float32).reshape(-1, 4), gt_labels,
                                       image_id=image, orig_size=(32, 32), difficult=flags & ~crowd, iscrowd=crowd))
        # pad the classes with fewer images, as the harness sees them (no boxes there)
        expected = [ref_voc_eval(d + [[]] * (n_images - len(d)), g + [[]] * (n_images - len(g))) for d, g in per_class]
        out = evaluate_detections(preds, targets, classes)
        for name, (ap11, ap_area, npos) in zip(classes[1:], expected):
            got = out["per_class"][name]
            assert got["num_gt"] == npos, trial
            assert got["ap50_voc07"] == (None if ap11 is None else pytest.approx(ap11, abs=1e-12)), trial
            assert got["ap50_area"] == (None if ap_area is None else pytest.approx(ap_area, abs=1e-12)), trial
        with_gt = [e for e in expected if e[2] > 0]
        if with_gt:
            assert out["map50_voc07"] == pytest.approx(np.mean([e[0] for e in with_gt]), abs=1e-12), trial
            assert out["map50_area"] == pytest.approx(np.mean([e[1] for e in with_gt]), abs=1e-12), trial
        else:
            assert out["map50_voc07"] is None and out["map50_area"] is None, trial
