"""tools/gpu_check.sh, the one-command GPU check, in its CPU dry-run mode: every step runs and records."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from harness.proposals.external import save_proposal_file

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_dry_run_records_every_step(tmp_path):
    proposals = tmp_path / "ss.json"  # the quick mode's 4 train / 2 test synthetic images
    save_proposal_file(proposals, {f"{split}/{i}": [[0, 0, 60, 60], [20, 20, 120, 100], [50, 40, 180, 150]]
                                   for split, n in (("train", 4), ("test", 2)) for i in range(n)})
    env = {**os.environ, "OUT": str(tmp_path / "out"), "GPU_CHECK_DEVICE": "cpu", "GPU_CHECK_QUICK": "1",
           "GPU_CHECK_PROPOSALS": str(proposals), "GPU_CHECK_RESULTS": str(tmp_path / "results"),
           "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(ROOT / "tools" / "gpu_check.sh")], env=env, capture_output=True, text=True,
                          timeout=600, cwd=tmp_path)
    log = (tmp_path / "out" / "gpu_check.log").read_text()
    assert done.returncode == 0, done.stdout + done.stderr + log
    assert done.stdout.count("rc=0 ") == 5 and "rc=1" not in done.stdout
    runs = [json.loads(line) for line in (tmp_path / "out" / "runs.jsonl").read_text().splitlines()]
    assert [(r["detector"], r["config"]["train"]["amp"], r["status"]) for r in runs] == [
        ("faster", False, "ok"), ("faster", True, "ok"), ("fast", False, "ok"), ("rcnn", False, "ok")]
    assert all(r["device"]["type"] == "cpu" for r in runs)
    assert runs[2]["proposals"]["source"] == "file" and runs[3]["proposals"]["source"] == "file"
    (bench,) = [json.loads(line) for line in (tmp_path / "out" / "bench.jsonl").read_text().splitlines()]
    assert bench["kind"] == "faster_vs_torchvision"
    assert (tmp_path / "results" / "gpu-cpu-dry-run" / "runs.jsonl").exists()
