"""Shared test helpers: the tiny run configuration and the overfit loop."""
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
)


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
