"""Which preset rows each run belongs to: by its config (seeds aside), not by the tag of the preset that ran it.

A run made by ``harness reproduce A`` whose resolved config equals a row of
preset B is a run of that row of B too: ``harness reproduce B`` skips it (the
sweep is keyed by the config hash), and the report shows it in both tables. The
rows are resolved at both scales, with no invocation-wide overrides and with
each set of them that a record names (``preset_overrides``), that set also
with the ``model.init`` the record's config has: a run made before the `cpu`
profile's default init became ``pretrained`` (or on a machine whose default
differs) is a row of ``--set model.init=random``, and shown there. A record that
matches no row of the preset named in its tag (an older record, or a preset
changed since) is still shown under its tag's row, so nothing recorded is lost.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

SCALES = ("cpu", "paper")


@dataclass
class RowRuns:
    """One row of a preset table and its runs (the latest record of each, any status)."""

    label: str
    detector: str
    runs: pd.DataFrame
    published: dict[str, str] = field(default_factory=dict)
    by_tag: bool = False  # matched by the record's tag, not by config

    @property
    def ok(self) -> pd.DataFrame:
        return self.runs[self.runs["status"] == "ok"]


@dataclass
class PresetTable:
    """One preset at one scale and one set of invocation-wide overrides, with every row it has."""

    preset_id: str
    preset: Any  # harness.config.presets.Preset, or None for an id no longer defined
    scale: str
    extra: dict[str, Any]
    rows: list[RowRuns]

    @property
    def runs(self) -> pd.DataFrame:
        frames = [r.runs for r in self.rows if not r.runs.empty]
        return pd.concat(frames) if frames else pd.DataFrame()


def _extras(latest: pd.DataFrame) -> list[str]:
    """Distinct invocation-wide override sets (as sorted JSON), the empty one first: each a record names, and
    each with the record's own ``model.init`` added where it names none (the init a default gave it)."""
    seen = ["{}"]
    for _, rec in latest.iterrows():
        ov = rec.get("preset_overrides")
        ov = ov if isinstance(ov, dict) else {}
        flat = rec.get("config_flat")
        init = flat.get("model.init") if isinstance(flat, dict) else None
        extras = [ov]
        if isinstance(init, str) and "model.init" not in ov:
            extras.append({**ov, "model.init": init})
        for extra in extras:
            text = json.dumps(extra, sort_keys=True, default=str)
            if text not in seen:
                seen.append(text)
    return seen


def preset_tables(latest: pd.DataFrame) -> list[PresetTable]:
    """Every (preset, scale, overrides) that has at least one run (any status), each with all its rows."""
    from harness.config import ConfigError
    from harness.config.presets import PRESETS, row_keys

    if latest.empty:
        return []
    extras = _extras(latest)
    index: dict[str, list[tuple[str, str, str, Any]]] = {}
    for preset in PRESETS:
        for scale in SCALES:
            resolved: set[tuple[str, ...]] = set()
            for extra in extras:
                try:
                    keyed = row_keys(preset, scale=scale, extra=json.loads(extra))
                except ConfigError:
                    continue
                # overrides that resolve to the same rows as an earlier set (e.g. a --set of a default's own
                # value) are one table: the earlier, the empty set first
                keys = tuple(key for _, key in keyed)
                if keys in resolved:
                    continue
                resolved.add(keys)
                for row, key in keyed:
                    index.setdefault(key, []).append((preset.id, scale, extra, row))
    hits: dict[tuple[str, str, str], dict[str, list[Any]]] = {}
    for idx, rec in latest.iterrows():
        found = index.get(rec.get("row_key"), []) if isinstance(rec.get("row_key"), str) else []
        for pid, scale, extra, row in found:
            hits.setdefault((pid, scale, extra), {}).setdefault(row.label, []).append(idx)
        tag = rec.get("preset")
        if isinstance(tag, str) and tag and not any(pid == tag for pid, *_ in found):
            ov = rec.get("preset_overrides")
            extra = json.dumps(ov if isinstance(ov, dict) else {}, sort_keys=True, default=str)
            label = str(rec.get("preset_row") or "(no row label)")
            hits.setdefault((tag, str(rec.get("scale") or "cpu"), extra), {}).setdefault(
                "\0" + label, []).append(idx)
    return [_table(key, hits[key], latest) for key in _order(hits)]


def _order(hits: dict[tuple[str, str, str], Any]) -> list[tuple[str, str, str]]:
    from harness.config.presets import PRESETS

    rank = {p.id: i for i, p in enumerate(PRESETS)}
    return sorted(hits, key=lambda k: (rank.get(k[0], len(rank)), k[0], SCALES.index(k[1]) if k[1] in SCALES
                                       else len(SCALES), k[2] != "{}", k[2]))


def _table(key: tuple[str, str, str], labels: dict[str, list[Any]], latest: pd.DataFrame) -> PresetTable:
    from harness.config.presets import BY_ID

    pid, scale, extra = key
    preset = BY_ID.get(pid)
    rows: list[RowRuns] = []
    done = set()
    for row in (preset.rows if preset else ()):
        idx = labels.get(row.label, []) + labels.get("\0" + row.label, [])
        done.update({row.label, "\0" + row.label})
        rows.append(RowRuns(row.label, row.detector, latest.loc[sorted(set(idx))], dict(row.published),
                            by_tag=row.label not in labels and bool(idx)))
    for label, idx in labels.items():  # tagged rows the preset no longer has
        if label not in done:
            runs = latest.loc[sorted(set(idx))]
            rows.append(RowRuns(label.lstrip("\0"), str(runs["detector"].iloc[0]), runs, by_tag=True))
    return PresetTable(pid, preset, scale, json.loads(extra), rows)
