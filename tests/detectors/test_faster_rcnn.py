"""One train and one eval forward of the composed detector, and an overfit check."""
import pytest
import torch

from harness.config import build_config
from harness.data import SyntheticConfig, build_dataset, training_target
from harness.evaluation.detection import evaluate_detections
from harness.run.builder import build_model


def _model(**overrides):
    cfg = build_config(overrides=overrides)
    return build_model(cfg, num_classes=3), cfg


def test_train_returns_named_losses_and_eval_returns_detections():
    torch.manual_seed(0)
    model, _ = _model()
    images = [torch.rand(3, 160, 192), torch.rand(3, 192, 160)]
    targets = [
        {"boxes": torch.tensor([[10.0, 20.0, 80.0, 90.0]]), "labels": torch.tensor([1])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},  # no objects
    ]
    model.train()
    losses = model(images, targets)
    assert set(losses) == {"loss_rpn_cls", "loss_rpn_box", "loss_cls", "loss_box"}
    sum(losses.values()).backward()
    model.eval()
    with torch.no_grad():
        out = model(images)
    assert len(out) == 2
    for o, im in zip(out, images):
        assert set(o) == {"boxes", "labels", "scores"}
        assert o["boxes"].dtype == torch.float32 and o["labels"].dtype == torch.int64
        assert (o["labels"] >= 1).all() and (o["labels"] <= 3).all()
        assert (o["boxes"][:, 2] <= im.shape[2]).all() and (o["boxes"][:, 3] <= im.shape[1]).all()


def test_training_requires_targets():
    model, _ = _model()
    with pytest.raises(ValueError):
        model([torch.rand(3, 64, 64)])


@pytest.mark.slow
def test_overfits_one_synthetic_image(overfit):
    """A few hundred steps on one image must reach VOC mAP50 > 0.9 on that image."""
    torch.manual_seed(0)
    synthetic = SyntheticConfig(train_images=1, val_images=1, test_images=1, seed=3)
    ds = build_dataset("synthetic", "train", min_size=192, max_size=320, synthetic=synthetic)
    image, target = ds[0]
    model, _ = _model()
    model = overfit(model, image, training_target(target), 300)
    with torch.no_grad():
        (pred,) = model([image])
    metrics = evaluate_detections([pred], [target], ds.class_names)
    assert metrics["map50_area"] > 0.9, metrics["per_class"]
