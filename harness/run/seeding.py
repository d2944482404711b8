"""Seeds derived from ``(seed, epoch, ...)`` and the RNG state a checkpoint carries.

Exact resume needs every random draw after a checkpoint to be the same as in
an uninterrupted run. Two mechanisms give that:

- *derived* streams: each epoch's shuffle order and flip sequence come from a
  generator seeded with :func:`derive_seed` of ``(seed, epoch, ...)``, so they
  do not depend on how many draws the process made before (a resumed process
  has made none);
- *restored* streams: the global generators that the model draws from (RoI and
  anchor sampling use torch's global RNG) are saved with the checkpoint by
  :func:`rng_state` and put back by :func:`set_rng_state`.
"""
from __future__ import annotations

import hashlib
import random
from typing import Any

import numpy as np
import torch


def derive_seed(*parts: int | str) -> int:
    """A 63-bit seed that depends only on ``parts`` (stable across processes and machines).

    A hash rather than ``seed * 1000 + epoch``: the latter makes ``(seed=1, epoch=0)``
    and ``(seed=0, epoch=1000)`` share a stream. Python's ``hash`` is salted per
    process, hence sha256.
    """
    text = ":".join(str(p) for p in parts).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "little") >> 1


def epoch_generator(seed: int, epoch: int, purpose: str) -> torch.Generator:
    """A fresh CPU generator for one ``purpose`` (e.g. ``"order"``) of one epoch."""
    return torch.Generator().manual_seed(derive_seed(seed, epoch, purpose))


def rng_state() -> dict[str, Any]:
    """The global RNG states (torch CPU and CUDA, numpy, Python) as checkpoint-safe values.

    Everything is a tensor, int, float, str, tuple or list, so the checkpoint loads
    with ``torch.load(..., weights_only=True)`` (numpy arrays would not).
    """
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured (CUDA only when the device count matches)."""
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and torch.cuda.device_count() == len(cuda):
        torch.cuda.set_rng_state_all(cuda)


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python's, numpy's and torch's global generators; returns a torch generator seeded alike."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)
