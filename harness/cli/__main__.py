"""``python -m harness.cli`` is the ``harness`` command."""
from harness.cli import app

app(prog_name="harness")
