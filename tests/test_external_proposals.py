"""External proposal files: documented format round trip, ranking by score, clear errors."""
import json

import numpy as np
import pytest
import torch

from harness.data import SyntheticConfig, build_dataset
from harness.proposals.external import (
    FileProposals,
    ProposalFileError,
    image_keys,
    load_proposal_file,
    save_proposal_file,
)

TINY = SyntheticConfig(train_images=2, val_images=0, test_images=1, image_size=64, seed=1)


def _dataset(split="train"):
    return build_dataset("synthetic", split, min_size=128, max_size=256, synthetic=TINY)


def test_round_trip_and_dataset_hook(tmp_path):
    ds = _dataset()
    path = tmp_path / "props.json"
    boxes = {"train/0": np.array([[1, 2, 30, 40], [5, 5, 20, 20]], np.float32), "train/1": np.zeros((0, 4))}
    save_proposal_file(path, boxes)
    loaded = load_proposal_file(path)
    assert set(loaded) == {"train/0", "train/1"} and np.array_equal(loaded["train/0"], boxes["train/0"])
    ds.proposal_provider = FileProposals(loaded, ds, path, max_proposals=2000)
    image, target = ds[0]
    # given in the 64-pixel original frame, moved to the resized 128-pixel frame by the transforms
    assert target["proposals"].dtype == torch.float32
    assert torch.allclose(target["proposals"][0], torch.tensor([2.0, 4.0, 60.0, 80.0]))
    assert ds[1][1]["proposals"].shape == (0, 4)


def test_scores_rank_the_boxes_and_the_cap_applies(tmp_path):
    path = tmp_path / "p.json"
    save_proposal_file(path, {"train/0": [[0, 0, 5, 5], [0, 0, 9, 9], [0, 0, 7, 7]], "train/1": [[0, 0, 3, 3]]},
                       scores={"train/0": [0.1, 0.9, 0.5]})
    loaded = load_proposal_file(path)
    assert loaded["train/0"][:, 2].tolist() == [9, 7, 5]
    ds = _dataset()
    provider = FileProposals(loaded, ds, path, max_proposals=2)
    assert provider(0, ds.load_image(0)).shape == (2, 4)


def test_keys_per_source(tmp_path):
    assert image_keys(_dataset("test"), 0) == ["test/0"]


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"images": {}}), "rcnn-harness-proposals"),
        (json.dumps({"format": "rcnn-harness-proposals", "version": 9, "images": {}}), "version"),
        (json.dumps({"format": "rcnn-harness-proposals", "version": 1, "images": {"a": {"boxes": [[5, 5, 1, 1]]}}}),
         "x2 < x1"),
        (json.dumps({"format": "rcnn-harness-proposals", "version": 1,
                     "images": {"a": {"boxes": [[0, 0, 1, 1]], "scores": [1, 2]}}}), "scores"),
    ],
)
def test_malformed_files_are_clear_errors(tmp_path, content, message):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(ProposalFileError, match=message):
        load_proposal_file(path)


def test_missing_file_and_missing_images(tmp_path):
    with pytest.raises(ProposalFileError, match="not found"):
        load_proposal_file(tmp_path / "nope.json")
    path = tmp_path / "p.json"
    save_proposal_file(path, {"train/0": [[0, 0, 5, 5]]})
    with pytest.raises(ProposalFileError, match="1 of 2 images"):
        FileProposals(load_proposal_file(path), _dataset(), path, max_proposals=10)
