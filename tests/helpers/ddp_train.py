"""Run under ``torchrun --nproc_per_node 2``: train a tiny detector with the engine, save each rank's result.

Writes ``OUT/rank{R}.pt`` with the rank's final parameters, the parameters it
started from, the image ids it trained on (to check the ranks' shards) and its
RNG state at the end; rank 0 also writes the checkpoint ``OUT/checkpoint.pt``.
"""
import sys
from pathlib import Path

import torch

from harness.config import build_config
from harness.run import distributed
from harness.run.builder import build_model
from harness.run.runner import build_datasets
from harness.run.seeding import rng_state, seed_everything
from harness.train.engine import epoch_loader, train


def main(detector: str, out: Path) -> None:
    torch.set_num_threads(1)
    cfg = build_config(detector=detector, overrides={
        "data.synthetic.train_images": 8, "data.synthetic.test_images": 2, "data.min_size": 96,
        "data.max_size": 128, "train.epochs": 2, "train.warmup_iters": 1, "train.checkpoint": False,
        "proposals.max_proposals": 100, "proposals.workers": 1, "proposals.cache_dir": str(out / "cache"),
    })
    with distributed.process_group(torch.device("cpu")) as (ranks, device):
        assert ranks.active and ranks.world_size == 2, ranks
        train_set, test_set = build_datasets(cfg)
        if detector == "fast":
            from harness.proposals.stage import attach_proposals

            attach_proposals(cfg, train_set, test_set)
        seed_everything(cfg.seed + ranks.rank)  # different init per rank: DDP must broadcast rank 0's
        model = build_model(cfg, train_set.num_classes)
        initial = {k: v.clone() for k, v in model.state_dict().items()}
        seen = [int(t["image_id"]) for epoch in range(cfg.train.epochs)
                for _, targets in epoch_loader(train_set, cfg.train, seed=cfg.seed, epoch=epoch)
                for t in targets]
        result = train(model, train_set, cfg.train, device=device, seed=cfg.seed,
                       checkpoint_path=out / "checkpoint.pt")
        torch.save({"final": model.state_dict(), "initial": initial, "seen": seen, "rng": rng_state(),
                    "iterations": result.iterations}, out / f"rank{ranks.rank}.pt")


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]))
