"""Evaluation: VOC / COCO detection metrics, the truncated-SVD test pass, FLOP counting, stage timers."""
