"""Fast R-CNN stage-wise training (Table 6): L_cls first, then the box regressor alone on the frozen net."""
import pytest
import torch
from torch.utils.data import Dataset

import harness.train.stagewise as stagewise
from harness.config import ConfigError, build_config
from harness.config.presets import BY_ID, resolve
from harness.run.builder import build_model


class TinySet(Dataset):
    """Four 96x96 images with one box each and a few proposals around it."""

    name = "tiny"

    def __init__(self):
        g = torch.Generator().manual_seed(0)
        self.items = []
        for i in range(4):
            box = torch.tensor([[10.0 + 4 * i, 12.0, 60.0 + 4 * i, 70.0]])
            jitter = torch.randn(24, 4, generator=g) * 6
            proposals = (box + jitter).clamp(0, 95)
            proposals[:, 2:] = torch.maximum(proposals[:, 2:], proposals[:, :2] + 8)
            target = {"boxes": box, "labels": torch.tensor([1 + i % 2]), "difficult": torch.zeros(1, dtype=torch.bool),
                      "iscrowd": torch.zeros(1, dtype=torch.bool), "proposals": torch.cat([proposals, box])}
            self.items.append((torch.rand(3, 96, 96, generator=g), target))

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]

    def set_epoch(self, epoch):
        pass


def _snapshot(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _changed(before, after):
    return {k for k in before if before[k].is_floating_point() and not torch.equal(before[k], after[k])}


@pytest.mark.parametrize("backbone", ["tiny", pytest.param("resnet18", marks=pytest.mark.slow)])  # resnet18: BatchNorm inside the box head (res5)
def test_each_stage_changes_only_what_it_should(monkeypatch, backbone):
    cfg = build_config(detector="fast", overrides={"train.scheme": "stagewise", "train.epochs": 1,
                                                    "train.box_stage_epochs": 1, "train.warmup_iters": 1,
                                                    "train.checkpoint": False, "model.backbone": backbone})
    torch.manual_seed(0)
    model = build_model(cfg, num_classes=3)
    snapshots, real_train = [], stagewise.train

    def spy(module, *args, **kwargs):
        snapshots.append(_snapshot(model))
        return real_train(module, *args, **kwargs)

    monkeypatch.setattr(stagewise, "train", spy)
    result = stagewise.fit_stagewise(model, TinySet(), cfg.train, device=torch.device("cpu"), seed=0)
    start, after_cls, final = snapshots[0], snapshots[1], _snapshot(model)
    stage1, stage2 = _changed(start, after_cls), _changed(after_cls, final)
    assert not any(k.startswith("roi_head.bbox_pred") for k in stage1), "stage 1 must not train the regressor"
    assert any(k.startswith("roi_head.cls_score") for k in stage1) and any(k.startswith("body") for k in stage1)
    assert stage2 and all(k.startswith("roi_head.bbox_pred") for k in stage2), stage2  # BN statistics too
    if backbone == "resnet18":
        assert any("running_mean" in k and k.startswith("roi_head.box_head") for k in stage1)
    assert set(result.stage_seconds) == {"stage1_classification", "stage2_box_regression"}
    assert result.summary.iterations == sum(result.stage_iterations.values()) == 4
    assert model.box_regression and all(p.requires_grad for p in model.parameters())  # restored for testing


def test_stagewise_config_and_preset_row():
    with pytest.raises(ConfigError, match="stage-wise"):
        build_config(detector="faster", overrides={"train.scheme": "stagewise"})
    with pytest.raises(ConfigError, match="cls_only"):
        build_config(detector="fast", overrides={"train.scheme": "stagewise", "model.cls_only": True})
    rows = [row.overrides.get("train.scheme") for row, _ in resolve(BY_ID["fast-table6"], scale="cpu")]
    assert "stagewise" in rows


@pytest.mark.slow
def test_stagewise_run_records_both_stages(tmp_path, tiny_run_args):
    import json

    from typer.testing import CliRunner

    from harness.cli import app

    result = CliRunner().invoke(app, ["run", "--detector", "fast", *tiny_run_args, "--set", "train.scheme=stagewise",
                                      "--set", "proposals.max_proposals=100", "--results", str(tmp_path)])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "runs.jsonl").read_text().splitlines()[-1])
    assert set(record["timing"]["train_stages"]) == {"stage1_classification", "stage2_box_regression"}
    assert record["config"]["train"]["scheme"] == "stagewise" and record["status"] == "ok"
