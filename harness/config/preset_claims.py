"""What each preset's paper claims, as checkable statements about its rows (:mod:`harness.config.claims`).

Row references are the preset's row labels; ``"label@metric"`` reads another metric of the same runs
(``@unshared``: the step-2 system of alternating training; ``@svm``: Fast R-CNN's SVM pass; ``@svd``: the
truncated-SVD pass; ``@test_s`` / ``@train_s``: seconds). The report gives each claim a verdict from the
rows' runs (mean ± 95 % CI over seeds). Claims that the ``cpu`` scale cannot test say why; nothing here is
chosen to make a claim come out right: each is the paper's own statement (METHODS.md, the tables).
"""
from __future__ import annotations

from harness.config.claims import Claim, Insensitive, Order, Ratio

GPU_VGG = "the paper's figure is for VGG16 on a GPU; the cpu scale runs the tiny backbone on 2 CPU cores"

CLAIMS: dict[str, tuple[Claim, ...]] = {
    "fast-table4": (
        Ratio("Fast R-CNN tests >= 146x faster than R-CNN (VGG16)", numerator="R-CNN@test_s",
              denominator="Fast R-CNN (+ truncated SVD pass)@test_s", factor=146,
              testable_at=("paper",), why_not=GPU_VGG),
        Ratio("Fast R-CNN trains >= 9x faster than R-CNN (VGG16)", numerator="R-CNN@train_s",
              denominator="Fast R-CNN (+ truncated SVD pass)@train_s", factor=9,
              testable_at=("paper",), why_not=GPU_VGG),
        Order("Fast R-CNN's mAP matches or beats R-CNN's", rows=("Fast R-CNN (+ truncated SVD pass)", "R-CNN"),
              at_least=True),
        Insensitive("truncated SVD costs little mAP: within 1 point of the full head (paper: -0.3)",
                    rows=("Fast R-CNN (+ truncated SVD pass)@svd", "Fast R-CNN (+ truncated SVD pass)"),
                    tolerance=0.01),
    ),
    "fast-table5": (
        Order("Fine-tuning the conv layers matters: all conv > fc layers only",
              rows=("fine-tune all conv layers", "freeze every conv stage (fc layers only)"),
              pretrained_only=True),
    ),
    "fast-table6": (
        Order("multi-task > stage-wise", rows=("multi-task (L_cls + L_loc), box regression",
                                              "stage-wise: L_cls, then box regression alone on the frozen net")),
        Order("multi-task training helps classification: multi-task (tested without box regression) > "
              "classification only", rows=("multi-task training, tested without box regression",
                                           "classification only, no box regression")),
    ),
    "fast-table7": (
        Order("multi-scale (5 scales) >= 1 scale", rows=("5 scales", "1 scale"), at_least=True),
    ),
    "fast-table8": (
        Order("softmax is as good as SVMs on Fast R-CNN's own features",
              rows=("Fast R-CNN: softmax (metrics) and SVMs on its fc7 (metrics_svm)",
                    "Fast R-CNN: softmax (metrics) and SVMs on its fc7 (metrics_svm)@svm"), at_least=True),
    ),
    "faster-table2": (
        Order("RPN 300 matches or beats selective search 2000",
              rows=("Faster R-CNN (RPN 300, approximate joint)", "Fast R-CNN + selective search, 2000 proposals"),
              at_least=True),
        Order("approximate joint training matches 4-step alternating",
              rows=("Faster R-CNN (RPN 300, approximate joint)", "Faster R-CNN (RPN 300, 4-step alternating)"),
              at_least=True),
    ),
    "faster-table3": (
        Order("shared features beat unshared", rows=("4-step alternating: unshared (step 2) and shared (step 4)",
                                                     "4-step alternating: unshared (step 2) and shared (step 4)"
                                                     "@unshared")),
    ),
    "faster-table5": (
        Ratio("selective search + Fast R-CNN is >= 10x slower per image than Faster R-CNN (0.5 vs 5 fps)",
              numerator="Fast R-CNN + selective search@test_s", denominator="Faster R-CNN (RPN)@test_s",
              factor=10, testable_at=("paper",), why_not=GPU_VGG),
        Ratio("Faster R-CNN is faster per image than selective search + Fast R-CNN (any factor > 1)",
              numerator="Fast R-CNN + selective search@test_s", denominator="Faster R-CNN (RPN)@test_s", factor=1),
    ),
    "faster-table8": (
        Order("3 scales x 3 ratios > 1 scale x 1 ratio", rows=("3 scales, 3 ratios", "1 scale (128^2), 1 ratio")),
        Order("3 scales x 3 ratios matches or beats 3 scales x 1 ratio", rows=("3 scales, 3 ratios", "3 scales, 1 ratio"),
              at_least=True),
    ),
    "faster-table9": (
        Insensitive("lambda is insensitive within 1..100 (the paper: 1.5 points)", rows=("lambda 1", "lambda 10",
                                                                                        "lambda 100"),
                    tolerance=0.015),
    ),
    "rcnn-table2": (
        Order("fine-tuning helps: fc7 fine-tuned > fc7 no fine-tune", rows=("fc7 fine-tuned", "fc7 no fine-tune"),
              pretrained_only=True),
        Order("box regression helps: fc7 fine-tuned + bbox reg > fc7 fine-tuned",
              rows=("fc7 fine-tuned + bbox reg", "fc7 fine-tuned")),
    ),
    "rcnn-appendix-a": (
        Order("context padding 16 > 0", rows=("context padding 16 (at 224; scaled to the crop)", "context padding 0")),
    ),
    "rcnn-appendix-b": (
        Order("SVMs beat the fine-tuned softmax", rows=("SVM negatives below IoU 0.3", "softmax classifier instead of SVMs")),
        Order("the SVMs' negative threshold 0.3 beats 0.5", rows=("SVM negatives below IoU 0.3",
                                                                  "SVM negatives below IoU 0.5")),
    ),
    "faster-figure2": (),  # a figure of recall curves: shown, no ordering claim beyond Table 2's
    "proposal-sweep": (
        Ratio("R-CNN's test time grows with the proposals: 2000 costs >= 5x 300",
              numerator="rcnn with 2000 proposals@test_s", denominator="rcnn with 300 proposals@test_s", factor=5),
        Order("more selective-search proposals do not help Fast R-CNN beyond 1000 (2000 not > 1000)",
              rows=("fast with 1000 proposals", "fast with 2000 proposals"), at_least=True),
    ),
}
