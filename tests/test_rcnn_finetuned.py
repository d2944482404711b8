"""The store of fine-tuned R-CNN networks: runs that differ only after fine-tuning share one fine-tuning."""
import pytest
import torch

from harness.config import build_config
from harness.run.builder import build_model
from harness.train.engine import TrainResult
from harness.train.rcnn_finetuned import FinetunedStore, finetune_key


def _key(**overrides):
    cfg = build_config(detector="rcnn", profile="cpu", overrides={"data.dataset": "synthetic", **overrides})
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, num_classes=3)
    return finetune_key(cfg, model.network, model.train_proposal_source.top_n)[0], model


@pytest.mark.parametrize("after", [
    {"rcnn.svm_neg_iou": 0.5}, {"rcnn.classifier": "softmax"}, {"rcnn.feature_layer": "pool5"},
    {"rcnn.bbox_reg": False}, {"rcnn.max_proposals_test": 100}, {"test.max_images": 7},
    {"proposals.max_proposals": 1000},  # still 200 training proposals kept: the same regions
])
def test_keys_after_fine_tuning_share_the_entry(after):
    assert _key(**after)[0] == _key()[0]


@pytest.mark.parametrize("before", [
    {"rcnn.context_padding": 0}, {"rcnn.finetune_sampling": "image"}, {"train.epochs": 1}, {"seed": 1},
    {"proposals.max_proposals": 100},  # 100 < 200 training proposals: other regions
    {"data.synthetic.train_images": 9},
])
def test_what_fine_tuning_reads_changes_the_key(before):
    assert _key(**before)[0] != _key()[0]


def test_the_initial_network_is_part_of_the_key():
    key, model = _key()
    with torch.no_grad():
        next(model.network.parameters()).add_(1.0)  # e.g. another --weights file: same config, other start
    cfg = build_config(detector="rcnn", profile="cpu", overrides={"data.dataset": "synthetic"})
    assert finetune_key(cfg, model.network, model.train_proposal_source.top_n)[0] != key


def test_store_round_trip_and_an_unreadable_entry_is_refused(tmp_path):
    key, model = _key()
    store = FinetunedStore(tmp_path)
    assert store.load(key, model.network) is None
    done = TrainResult(seconds=12.5, iterations=40, epochs_done=4, last_losses={"loss_cls": 0.3})
    assert store.save(key, model.network, done, {"k": 1}) > 0
    saved = {k: v.clone() for k, v in model.network.state_dict().items()}
    with torch.no_grad():
        for p in model.network.parameters():
            p.zero_()
    got = store.load(key, model.network)
    assert got == TrainResult(seconds=12.5, iterations=40, epochs_done=4, last_losses={"loss_cls": 0.3})
    assert all(torch.equal(v, saved[k]) for k, v in model.network.state_dict().items())
    store.path(key).write_bytes(b"torn")
    assert store.load(key, model.network) is None
