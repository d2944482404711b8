"""Issue 17 item 3: the mechanisms behind the missing tables and rows (tiny settings)."""
import pytest
import torch

from harness.config import ConfigError, build_config
from harness.run.builder import build_model


def _proposal_targets():
    return [{"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),
             "proposals": torch.tensor([[10.0, 12.0, 70.0, 90.0], [30.0, 5.0, 120.0, 60.0]])}]


def test_test_box_regression_off_keeps_proposals_as_boxes():
    """Fast R-CNN Table 6: multi-task trained, tested without bbox_pred: every box is a proposal."""
    outs = {}
    for flag in (True, False):
        torch.manual_seed(0)
        model = build_model(build_config(detector="fast", overrides={"test.box_regression": flag,
                                                                    "model.score_thresh": 0.0}), num_classes=2)
        with torch.no_grad():
            model.roi_head.bbox_pred.bias.fill_(0.5)  # a regressor that moves every box
        model.eval()
        with torch.no_grad():
            outs[flag] = model([torch.rand(3, 128, 160)], _proposal_targets())[0]["boxes"]
    proposals = _proposal_targets()[0]["proposals"]
    assert len(outs[False]) and all((proposals == b).all(dim=1).any() for b in outs[False])
    assert not any((proposals == b).all(dim=1).any() for b in outs[True])  # the regressor moved them


def test_test_box_regression_refused_for_rcnn():
    with pytest.raises(ConfigError, match="rcnn.bbox_reg"):
        build_config(detector="rcnn", overrides={"test.box_regression": False})
