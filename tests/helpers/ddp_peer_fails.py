"""Run under ``torchrun --nproc_per_node 2``: ``harness run`` in which rank 1 fails once training starts.

Rank 1's ``harness.train.engine.train`` raises ``ValueError("boom on rank 1")``; rank 0 trains
normally until its collective breaks or torchrun stops it. Arguments: those of ``harness run``.
"""
import os
import sys

from harness.cli import app
from harness.train import engine, schemes

if os.environ.get("RANK") == "1":

    def failing_train(*args, **kwargs):
        raise ValueError("boom on rank 1")

    engine.train = failing_train
    schemes.train = failing_train  # the fit table imported it by name

if __name__ == "__main__":
    app(args=sys.argv[1:], prog_name="harness")
