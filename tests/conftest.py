"""Shared test helpers: the tiny run configuration and the overfit loop."""
import json
import os
import shutil
import tempfile

import pytest
import torch

# A run small enough for a unit test: 4 train / 2 test synthetic images at 96 px, one epoch.
TINY_RUN_ARGS = (
    "--epochs", "1",
    "--set", "data.synthetic.train_images=4",
    "--set", "data.synthetic.test_images=2",
    "--set", "data.min_size=96",
    "--set", "data.max_size=128",
    "--set", "test.warmup_images=1",
    "--set", "model.init=random",  # the built-in pre-training is tested on its own (tests/test_pretrain.py)
)


# A run that leaves model.init at auto (in this process or a subprocess, which inherits the environment)
# gets a seconds-long default pre-training, cached once per session, instead of the real one (minutes).
TINY_PRETRAIN = {"train_images": 32, "test_images": 8, "batch_size": 16, "epochs": 1}
os.environ["HARNESS_PRETRAIN_OVERRIDES"] = json.dumps(TINY_PRETRAIN)
os.environ["HARNESS_PRETRAIN_CACHE"] = _PRETRAIN_CACHE = tempfile.mkdtemp(prefix="harness-test-pretrained-")
# generated scenes are drawn afresh in every test (a test may change the generator); the on-disk scene cache
# is tested on its own (tests/data/test_scene_cache.py), with its own folders
os.environ["HARNESS_DATA_CACHE"] = "off"


@pytest.fixture(autouse=True, scope="session")
def _remove_pretrain_cache():
    yield
    shutil.rmtree(_PRETRAIN_CACHE, ignore_errors=True)


@pytest.fixture
def tiny_run_args() -> list[str]:
    return list(TINY_RUN_ARGS)


@pytest.fixture
def overfit():
    """``overfit(model, image, target, steps)``: SGD on one image; returns the model in eval mode."""

    def fit(model, image, target, steps, lr=0.01):
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9)
        model.train()
        for _ in range(steps):
            losses = model([image], [target])
            opt.zero_grad()
            sum(losses.values()).backward()
            opt.step()
        return model.eval()

    return fit
