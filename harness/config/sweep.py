"""``harness sweep``'s grid: configs × seeds and the config hash that identifies a run (running the
points is :mod:`harness.run.sweep`).

A run is identified by the hash of its fully resolved config (seed included).
A sweep started again skips every grid point that already has an ``ok`` record
in the results file, so an interrupted sweep resumes where it stopped, and
failed or interrupted points are run again: from their last checkpoint when a
killed run left one (:mod:`harness.run.sweep_resume`, which also keeps two sweeps in
one folder from running the same point twice).
"""
from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass
from typing import Any

from harness.config import ConfigError, RunConfig, build_config, config_keys, to_dict
from harness.config.capabilities import check_capabilities


def config_hash(config: dict[str, Any] | RunConfig) -> str:
    """Stable hash of a resolved config (as stored in a record, or as a RunConfig)."""
    if isinstance(config, RunConfig):
        config = to_dict(config)
    # tuples and lists dump alike, so a RunConfig and its record (lists) hash the same
    text = json.dumps(config, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def parse_grid(items: list[str]) -> dict[str, list[str]]:
    """``["train.lr=0.01,0.02", "model.anchor_sizes=32,64;64,128"]`` → key → values.

    Values are separated by commas, or by semicolons when any is present (for keys
    whose single value is itself a comma list, like anchor sizes).
    """
    keys = config_keys()
    grid: dict[str, list[str]] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--grid expects key=v1,v2,..., got {item!r}")
        key, values = (part.strip() for part in item.split("=", 1))
        if key not in keys:
            raise ConfigError(f"unknown config key {key!r} in --grid; `harness config` lists every key")
        if key == "seed":
            raise ConfigError("use --seeds N rather than a grid over seed")
        sep = ";" if ";" in values else ","
        is_tuple = getattr(keys[key], "__origin__", None) is tuple
        parts = [values] if (sep == "," and is_tuple) else [v.strip() for v in values.split(sep)]
        grid[key] = [v for v in parts if v]
        if not grid[key]:
            raise ConfigError(f"--grid {key} has no values")
    return grid


@dataclass(frozen=True)
class SweepPoint:
    overrides: dict[str, Any]
    config: RunConfig

    @property
    def key(self) -> str:
        return config_hash(self.config)


def expand(
    detector: str, grid: dict[str, list[str]], *, seeds: int, base: dict[str, Any] | None = None, profile: str = "cpu"
) -> list[SweepPoint]:
    """Cartesian product of the grid, times seeds 0..seeds-1, each a validated config."""
    points = []
    keys = list(grid)
    for values in itertools.product(*(grid[k] for k in keys)):
        for seed in range(seeds):
            overrides = {**(base or {}), **dict(zip(keys, values)), "seed": seed}
            cfg = build_config(detector=detector, profile=profile, overrides=overrides)
            check_capabilities(cfg)  # refused before the first run, not at the point that sets it
            points.append(SweepPoint(overrides, cfg))
    return points


def _with_defaults(config: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    out = dict(config)
    for key, value in defaults.items():
        if key not in out:
            out[key] = value
        elif isinstance(value, dict) and isinstance(out[key], dict):
            out[key] = _with_defaults(out[key], value)
    return out


def record_config_hash(config: dict[str, Any]) -> str:
    """:func:`config_hash` of a stored config, keys added to the harness since filled in at their defaults
    (which by convention keep the old behaviour: see :func:`harness.run.checkpoint.config_differences`)."""
    return config_hash(_with_defaults(config, to_dict(RunConfig())))
