"""R-CNN (Girshick et al., CVPR 2014): warped regions through the whole CNN, SVMs, box regression.

- :mod:`.warp`: context padding and the vectorised crop-and-warp (``roi_align``);
- :mod:`.network`: the shared backbone on crops, with pool5 / fc6 / fc7 taps;
- :mod:`.model`: :class:`RCNN`, the common detector interface (fine-tuning loss, test path);
- :mod:`.svm`: per-class linear SVMs with hard-negative mining;
- :mod:`.bbox_reg`: class-specific ridge box regression on pool5.

The stages are driven by :func:`harness.train.rcnn.train_rcnn`; the on-disk feature cache is
:mod:`harness.train.feature_cache`; fine-tuning's sampling across the training set (R-CNN's,
the default) is :mod:`harness.train.rcnn_sampling`.
"""
from .model import CLASSIFIERS, RCNN
from .network import LAYERS, RegionCNN, split_box_head

__all__ = [
    "CLASSIFIERS",
    "LAYERS",
    "RCNN",
    "RegionCNN",
    "split_box_head",
]
