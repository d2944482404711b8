"""``python -m harness`` (and ``torchrun ... -m harness run ...``) is the ``harness`` command."""
from harness.cli import app

app(prog_name="harness")
