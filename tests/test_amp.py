"""--amp: mixed precision in training and test (bfloat16 on the CPU, float16 + loss scaling on CUDA)."""
import pytest
import torch
from typer.testing import CliRunner

from harness.cli import app
from harness.config import ConfigError, build_config
from harness.run.builder import build_model
from harness.run.runner import build_datasets
from harness.train.engine import predict, train


def _setup(amp: bool):
    cfg = build_config(overrides={
        "data.synthetic.train_images": 2, "data.synthetic.test_images": 1, "data.min_size": 96,
        "data.max_size": 128, "train.epochs": 1, "train.checkpoint": False, "train.amp": amp, "test.amp": amp,
        "test.warmup_images": 0,
    })
    train_set, test_set = build_datasets(cfg)
    torch.manual_seed(0)
    model = build_model(cfg, train_set.num_classes)
    dtypes = []
    model.body.register_forward_hook(lambda mod, inp, out: dtypes.append(out.dtype))
    return cfg, model, train_set, test_set, dtypes


@pytest.mark.parametrize("amp, dtype", [(True, torch.bfloat16), (False, torch.float32)])
def test_amp_runs_the_network_in_reduced_precision(amp, dtype):
    cfg, model, train_set, test_set, dtypes = _setup(amp)
    result = train(model, train_set, cfg.train, device=torch.device("cpu"), seed=0)
    assert result.iterations == 1 and dtypes == [dtype]
    assert all(torch.isfinite(torch.tensor(v)) for v in result.last_losses.values())
    assert all(p.dtype == torch.float32 for p in model.parameters())  # master weights stay float32
    dtypes.clear()
    (pred,), _ = predict(model, test_set, cfg.test, device=torch.device("cpu"))
    assert dtypes == [dtype]
    assert pred["boxes"].dtype == torch.float32 and pred["scores"].dtype == torch.float32


def test_amp_flag_sets_both_and_rcnn_refuses_it(tmp_path):
    cfg = build_config(detector="fast", overrides={"train.amp": True, "test.amp": True})
    assert cfg.train.amp and cfg.test.amp
    with pytest.raises(ConfigError, match="R-CNN"):
        build_config(detector="rcnn", overrides={"train.amp": True})
    result = CliRunner().invoke(app, ["run", "--detector", "rcnn", "--amp", "--results", str(tmp_path)])
    assert result.exit_code == 2 and "R-CNN" in result.output
