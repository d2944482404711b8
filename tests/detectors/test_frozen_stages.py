"""Frozen backbone stages are frozen whole: no gradient, and BatchNorm statistics that a training step
does not move (model.train() leaves them in eval mode)."""
import copy

import torch
from torch import nn

from detectors.backbones import build_backbone
from harness.config import build_config
from harness.run.builder import build_model


def _bn_stats(module):
    return {n: b.clone() for n, b in module.named_buffers() if "running" in n}


def test_a_training_step_leaves_frozen_batchnorm_statistics_alone():
    torch.manual_seed(0)
    cfg = build_config(detector="faster", overrides={"model.freeze_stages": 2, "model.channels_last": False})
    model = build_model(cfg, num_classes=4)
    model.train()
    stages = list(model.body.children())
    frozen, trained = stages[:2], stages[2:]
    assert all(not m.training for s in frozen for m in s.modules())
    assert all(m.training for s in trained for m in s.modules())
    before = [_bn_stats(s) for s in stages]
    weights = [copy.deepcopy(s.state_dict()) for s in frozen]
    image = torch.rand(3, 128, 160)
    target = {"boxes": torch.tensor([[10.0, 20.0, 90.0, 100.0]]), "labels": torch.tensor([1])}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.01)
    losses = model([image], [target])
    sum(losses.values()).backward()
    opt.step()
    after = [_bn_stats(s) for s in stages]
    for b, a in zip(before[:2], after[:2]):
        assert b and all(torch.equal(b[k], a[k]) for k in b)  # frozen: statistics unchanged
    assert any(not torch.equal(before[2][k], after[2][k]) for k in before[2])  # trained: they move
    for w, s in zip(weights, frozen):
        assert all(torch.equal(w[k], v) for k, v in s.state_dict().items())


def test_a_frozen_stage_keeps_its_state_dict_keys_and_copies():
    plain, frozen = build_backbone("tiny"), build_backbone("tiny", freeze_stages=2)
    assert list(plain.body.state_dict()) == list(frozen.body.state_dict())
    twin = copy.deepcopy(nn.ModuleDict({"body": frozen.body}))
    twin.train()
    assert not twin["body"][0].training and twin["body"][2].training
