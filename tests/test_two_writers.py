"""Two writers at once (issue 20, item 5): real processes sharing one results folder or one proposal cache.

- Two ``harness run`` appending to one ``runs.jsonl``: two whole records.
- Two ``harness proposals`` filling one cache (one in its own process, one with a
  worker pool): every entry is computed exactly once, in either process, and the
  cache ends complete, valid, and without temporary or claim files.

Computations are counted across every process (the commands, their pool workers,
the forkserver) by a ``sitecustomize`` on ``PYTHONPATH`` that wraps selective search:
each call appends ``<pid> <digest>`` to a counter file (``O_APPEND``: whole lines) and
takes 0.3 s longer; the first search of each process waits until the other's has started, so the two
commands really overlap on the same images however long each takes to start.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from dirty_data import TINY_RUN

from detectors.selective_search import SelectiveSearchParams
from harness.config import build_config
from harness.data import build_dataset
from harness.proposals.cache import ProposalCache, image_digest
from harness.proposals.stage import selective_search_params

ROOT = Path(__file__).resolve().parents[1]

SITECUSTOMIZE = '''
import os, time
import numpy as np
import detectors.selective_search as ss
from harness.proposals.cache import image_digest
_real = ss.selective_search
_started = []
def counted(image, params):
    if not _started:  # a barrier: the first search of each process waits for the other process's
        _started.append(1)
        open(os.environ["COUNT_FILE"] + f".ready.{os.getpid()}", "w").close()
        folder, name = os.path.split(os.environ["COUNT_FILE"])
        deadline = time.monotonic() + 120
        while sum(f.startswith(name + ".ready.") for f in os.listdir(folder)) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
    with open(os.environ["COUNT_FILE"], "a") as f:
        f.write(f"{os.getpid()} {image_digest(np.asarray(image))}\\n")
    time.sleep(0.3)
    return _real(image, params)
ss.selective_search = counted
'''

DATA = ["--set", "data.synthetic.train_images=6", "--set", "data.synthetic.test_images=3",
        "--set", "data.synthetic.image_size=64", "--set", "proposals.image_min_size=64",
        "--set", "proposals.image_max_size=96"]


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    return env


@pytest.mark.slow  # two CLI processes and their pools: ~20 s idle, more on a loaded machine
def test_two_proposal_commands_compute_each_entry_once(tmp_path: Path):
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(SITECUSTOMIZE)
    counter = tmp_path / "computed.txt"
    counter.touch()
    cache_dir = tmp_path / "cache"
    env = _env(PYTHONPATH=f"{hook}{os.pathsep}{ROOT}", COUNT_FILE=str(counter), COLUMNS="200")
    base = [sys.executable, "-m", "harness.cli", "proposals", *DATA, "--set", f"proposals.cache_dir={cache_dir}"]
    procs = [subprocess.Popen([*base, "--workers", w], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True) for w in ("0", "1")]
    outputs = [p.communicate(timeout=240)[0] for p in procs]
    for p, out in zip(procs, outputs):
        assert p.returncode == 0, out

    cfg = build_config(detector="fast", overrides=dict(a.split("=", 1) for a in DATA[1::2]))
    sets = [build_dataset("synthetic", s, min_size=cfg.data.min_size, max_size=cfg.data.max_size,
                          synthetic=cfg.data.synthetic) for s in ("train", "test")]
    digests = {image_digest(ds.load_image(i)) for ds in sets for i in range(len(ds))}
    assert len(digests) == 9
    computed = Counter(line.split()[1] for line in counter.read_text().splitlines())
    assert set(computed) == digests and max(computed.values()) == 1, f"computed twice: {computed}"
    pids = {line.split()[0] for line in counter.read_text().splitlines()}
    assert len(pids) >= 2, "one command did all the work: the test did not exercise two writers"

    cache = ProposalCache(cache_dir, selective_search_params(cfg.proposals))
    assert all(cache.load(d) is not None for d in digests)  # complete, each entry whole and checked
    assert cache.usage()[1] == 9
    leftovers = [p.name for p in cache_dir.rglob("*") if p.is_file() and not p.name.endswith(".prop")]
    assert leftovers == []  # no .tmp, no claim files


def test_a_claim_held_by_a_live_process_is_waited_for_or_skipped(tmp_path: Path):
    """In one process: another claimant's hold makes a non-waiting lookup return busy, not compute."""
    from harness.proposals.precompute import BUSY, HIT, lookup_or_compute

    params = SelectiveSearchParams(image_min_size=64, image_max_size=96, max_proposals=100)
    cache = ProposalCache(tmp_path, params)
    image = build_dataset("synthetic", "test", min_size=64, max_size=96,
                          synthetic=build_config().data.synthetic).load_image(0)
    digest = image_digest(image)
    script = ("import sys, time; from pathlib import Path; from harness.proposals.cache import ProposalCache\n"
              "from detectors.selective_search import SelectiveSearchParams as P\n"
              f"c = ProposalCache({str(tmp_path)!r}, P(image_min_size=64, image_max_size=96, max_proposals=100))\n"
              f"with c.claim({digest!r}):\n"
              "    print('held', flush=True); sys.stdin.readline()\n")
    holder = subprocess.Popen([sys.executable, "-c", script], env=_env(PYTHONPATH=str(ROOT)), stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert lookup_or_compute(cache, image, wait=False) == (None, BUSY)
        holder.kill()  # dies holding the claim: the kernel releases it, nothing is stale
        holder.wait(timeout=30)
        assert cache.claim_path(digest).exists()  # the dead holder's claim file is still there
        entry, status = lookup_or_compute(cache, image, wait=False)
        assert entry is not None and status == "computed"
        assert not cache.claim_path(digest).exists()
        assert lookup_or_compute(cache, image)[1] == HIT
    finally:
        holder.kill()


@pytest.mark.slow  # two tiny training runs at once
def test_two_runs_append_to_one_runs_jsonl(tmp_path: Path):
    command = [sys.executable, "-m", "harness.cli", "run", "--results", str(tmp_path), *TINY_RUN,
               "--epochs", "1", "--set", "data.synthetic.train_images=2"]
    procs = [subprocess.Popen([*command, "--seed", str(seed)], env=_env(PYTHONPATH=str(ROOT)), cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for seed in (0, 1)]
    for p in procs:
        out = p.communicate(timeout=240)[0]
        assert p.returncode == 0, out
    records = [json.loads(line) for line in (tmp_path / "runs.jsonl").read_text().splitlines()]
    assert sorted(r["seed"] for r in records) == [0, 1] and all(r["status"] == "ok" for r in records)
    assert len({r["run_id"] for r in records}) == 2
