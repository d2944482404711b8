"""The papers' published numbers (``harness/reference/published.csv``).

The CSV is packaged with the project (``[tool.setuptools.package-data]``) and
found relative to this module, so the report never needs ``../shared``.
Its source columns are kept unchanged: ``paper, table, backbone, train_data,
test_data, method, setting, metric, value, unit``.
"""
from __future__ import annotations

import math
from pathlib import Path

import pandas as pd

PUBLISHED_CSV = Path(__file__).resolve().parent.parent / "reference" / "published.csv"
SOURCE_COLUMNS = ["paper", "table", "backbone", "train_data", "test_data", "method",
                  "setting", "metric", "value", "unit"]

# which harness detector measures a published "method" (by exact method name)
METHOD_DETECTORS: dict[str, tuple[str, ...]] = {
    "R-CNN": ("rcnn",),
    "Fast R-CNN": ("fast",),
    "Fast R-CNN + selective search": ("fast",),
    "Faster R-CNN (RPN)": ("faster",),
    "selective search": ("fast", "rcnn"),  # the proposal stage of the detectors that use it
}

# speed-up comparisons: (label, faster detector, slower detector)
COMPARISONS = [
    ("Fast R-CNN vs R-CNN", "fast", "rcnn"),
    ("Faster R-CNN vs Fast R-CNN + selective search", "faster", "fast"),
]


def load_published(path: Path | None = None) -> pd.DataFrame:
    """All rows, source columns as strings, plus ``value_num`` (float or NaN)."""
    df = pd.read_csv(path or PUBLISHED_CSV, dtype=str, keep_default_na=False)
    missing = [c for c in SOURCE_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"{path or PUBLISHED_CSV}: missing columns {missing}")
    df["value_num"] = pd.to_numeric(df["value"], errors="coerce")
    return df


def published_key(row: pd.Series) -> str:
    """A published.csv row as preset rows name it (``Row.published``): "method · setting"."""
    return " · ".join(str(x) for x in (row["method"], row["setting"]) if x and not pd.isna(x))


def to_float(v) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f


def detectors_for(method: str) -> tuple[str, ...]:
    return METHOD_DETECTORS.get(str(method), ())


def methods_for(detector: str) -> list[str]:
    return [m for m, dets in METHOD_DETECTORS.items() if dets == (detector,)]


def paper_speedups(published: pd.DataFrame) -> list[dict]:
    """The papers' speed-up ratios, each traced to the rows it comes from.

    - rows whose metric is ``... speedup`` and method ``"<A> vs <B>"`` are taken as published;
    - otherwise a ratio is derived from two time rows of the same paper, table, backbone
      and setting: the slower method's time over the faster method's time.
    """
    out: list[dict] = []
    for label, new, old in COMPARISONS:
        new_methods, old_methods = methods_for(new), methods_for(old)
        explicit = published[published["metric"].str.endswith("speedup")
                             & published["method"].isin([f"{n} vs {o}" for n in new_methods
                                                         for o in old_methods])]
        covered = set()
        for _, r in explicit.iterrows():
            kind = r["metric"].replace("speedup", "").strip() or "test"
            covered.add((r["paper"], r["table"], r["backbone"], kind))
            out.append(dict(comparison=label, kind=kind, paper=r["paper"], table=r["table"],
                            backbone=r["backbone"], setting=r["setting"],
                            ratio=to_float(r["value"]),
                            derived_from=f"published {r['metric']} ({r['value']}{r['unit']})"))
        times = published[published["metric"].str.contains("time")
                          & published["unit"].isin(["s/img", "ms/img", "h", "s"])]
        for (paper, table, backbone, setting, metric, unit), g in times.groupby(
                ["paper", "table", "backbone", "setting", "metric", "unit"], sort=False):
            kind = "train" if "train" in metric else "test"
            if (paper, table, backbone, kind) in covered:
                continue  # the paper states this ratio itself
            t_new = g[g["method"].isin(new_methods)]["value_num"].dropna()
            t_old = g[g["method"].isin(old_methods)]["value_num"].dropna()
            if len(t_new) != 1 or len(t_old) != 1 or float(t_new.iloc[0]) <= 0:
                continue
            ratio = float(t_old.iloc[0]) / float(t_new.iloc[0])
            out.append(dict(comparison=label, kind=kind, paper=paper, table=table,
                            backbone=backbone, setting=setting, ratio=ratio,
                            derived_from=f"{metric}: {t_old.iloc[0]:g} {unit} / "
                                         f"{t_new.iloc[0]:g} {unit}"))
    return out
