"""R-CNN's fine-tuned network, kept on disk and reused by every run that would fine-tune it identically.

R-CNN fine-tunes its CNN once and then trains SVMs on several layers and with
several settings (section 3.2, Table 2; appendix B). In this harness each of
those is a run of its own, and without this store every run fine-tuned again,
bit for bit the same network. Runs that differ only *after* fine-tuning (the
feature layer, the classifier, the SVM and box-regression settings, the test
proposals and every ``test.*`` key) now share one fine-tuning:

- The key is the SHA-256 of the run's config with those keys taken out, the
  training proposals replaced by the number actually kept
  (``min(rcnn.max_proposals_train, proposals.max_proposals)``), and the digest
  of the network *as initialised* (seed, backbone and any ``--weights`` file
  in one value).
- The entry holds the fine-tuned network's state dict and what the fine-tuning
  measured when it ran (seconds, iterations, epochs, last losses). A run that
  reuses it records ``rcnn.finetune_store`` with ``reused: true`` and that
  measured time as its ``finetune`` stage (the way a proposal-cache hit reports
  the selective-search time stored in its entry).
- Written atomically (:func:`harness.run.storage.atomic_write_bytes`), read
  with ``torch.load(weights_only=True)``; an unreadable entry is fine-tuned
  again and overwritten.
"""
from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from torch import nn

from harness.config import RunConfig, to_dict
from harness.config.sweep import config_hash
from harness.run.storage import atomic_torch_save
from harness.train.engine import TrainResult
from harness.train.feature_cache import state_dict_digest

log = logging.getLogger(__name__)

# rcnn.* keys read only after fine-tuning (features, SVMs, box regression, test) or only where things are kept
AFTER_FINETUNE = ("feature_layer", "classifier", "svm_c", "svm_pos_weight", "svm_neg_iou", "hard_negative_rounds",
                  "svm_score_thresh", "bbox_reg", "bbox_reg_lambda", "bbox_reg_iou", "max_proposals_test",
                  "batch_size", "cache_dtype", "cache_dir", "max_proposals_train")
# proposals.* keys that do not change the training regions' boxes (the count kept is keyed separately)
_PROPOSAL_PLUMBING = ("max_proposals", "workers", "cache_dir", "test_timing")
FORMAT = 1


def finetune_key(cfg: RunConfig, network: nn.Module, train_proposals: int) -> tuple[str, dict[str, Any]]:
    """``(key, what it hashes)`` for the fine-tuning of ``network`` (as initialised) under ``cfg``."""
    tree = to_dict(cfg)
    tree.pop("test", None)
    tree["rcnn"] = {k: v for k, v in tree["rcnn"].items() if k not in AFTER_FINETUNE}
    tree["rcnn"]["training_proposals_kept"] = train_proposals
    tree["proposals"] = {k: v for k, v in tree["proposals"].items() if k not in _PROPOSAL_PLUMBING}
    tree["initial_network_sha256"] = state_dict_digest(network)
    tree["format"] = FORMAT
    return config_hash(tree), tree


class FinetunedStore:
    """``<root>/<key>.pt``: fine-tuned R-CNN networks (root: ``<rcnn.cache_dir>/finetuned``)."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / f"{key}.pt"

    def load(self, key: str, network: nn.Module) -> TrainResult | None:
        """Load the entry's weights into ``network`` and return its fine-tuning figures; None when absent."""
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            entry = torch.load(path, map_location="cpu", weights_only=True)
            if entry.get("format") != FORMAT:
                raise ValueError(f"format {entry.get('format')!r}")
            network.load_state_dict(entry["network"])
            return TrainResult(**entry["result"])
        except Exception as err:  # noqa: BLE001 - any unreadable entry is re-made, never trusted
            log.warning("fine-tuned R-CNN entry %s is unusable (%s); fine-tuning again", path, err)
            return None

    def save(self, key: str, network: nn.Module, result: TrainResult, tree: dict[str, Any]) -> int:
        """Store ``network`` (fine-tuned) with ``result``; returns the bytes written."""
        fields = {k: v for k, v in asdict(result).items() if k in ("seconds", "iterations", "epochs_done",
                                                                    "last_losses")}
        return atomic_torch_save(self.path(key), {"format": FORMAT, "network": network.state_dict(), "result": fields,
                                                  "key": tree}, what="fine-tuned R-CNN network")
