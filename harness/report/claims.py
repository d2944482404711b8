"""Claims: each preset's paper claims (:mod:`harness.config.preset_claims`) with our verdict.

For every preset table that has runs (:mod:`.preset_rows`), each claim is judged from the rows' ok runs,
one value per seed, as mean ± 95 % confidence interval (:mod:`.verdicts`): reproduced in direction,
contradicted, inconclusive (the intervals overlap, or too few seeds), or not testable at this scale (why).
"""
from __future__ import annotations

from collections.abc import Sequence

import pandas as pd

from harness.config.claims import Claim, Ratio, rows_named
from harness.config.preset_claims import CLAIMS
from harness.config.presets import BY_ID

from .blocks import DASH, Note, Section, Table, display_frame
from .preset_rows import PresetTable, preset_tables
from .published import published_key
from .records import RecordSet
from .verdicts import (
    CONTRADICTED,
    INCONCLUSIVE,
    NOT_TESTABLE,
    REPRODUCED,
    Verdict,
    judge,
)

# ``row@what``: which column of a row's runs a reference reads (default: the claim's metric)
REFERENCE_COLUMNS = {
    "map50_voc07": "map50_voc07", "unshared": "map50_voc07_unshared", "svd": "map50_voc07_svd",
    "svm": "map50_voc07_svm", "test_s": "test_s_median", "train_s": "train_s",
}
VERDICT_ORDER = (REPRODUCED, CONTRADICTED, INCONCLUSIVE, NOT_TESTABLE)


def reference_values(table: PresetTable, ref: str, metric: str) -> list[float]:
    """One value per ok run of the row ``ref`` names (``label`` or ``label@what``)."""
    label, _, what = ref.partition("@")
    column = REFERENCE_COLUMNS[what or metric]
    for row in table.rows:
        if row.label == label and column in row.ok:
            return [float(v) for v in row.ok[column] if v is not None and not pd.isna(v)]
    return []


def claim_values(table: PresetTable, claim: Claim) -> dict[str, Sequence[float]]:
    metric = "test_s" if isinstance(claim, Ratio) and claim.metric == "test_s" else getattr(claim, "metric", "")
    return {ref: reference_values(table, ref, metric) for ref in rows_named(claim)}


RANDOM_INIT = ("about pre-trained features: these runs start from random init (model.init=random, no --weights), "
               "so the frozen or not-fine-tuned layers hold random features")


def from_random_init(table: PresetTable, claim: Claim) -> bool:
    """Whether any ok run of a row ``claim`` names started from random init (its record's ``init``)."""
    labels = {ref.partition("@")[0] for ref in rows_named(claim)}
    return any("init" in row.ok and (row.ok["init"] == "random").any() for row in table.rows if row.label in labels)


def paper_values(preset_id: str, claim: Claim, published: pd.DataFrame) -> str:
    """The paper's numbers behind ``claim``: each referenced row's published value in that claim's
    pass (main, or ``@svd`` / ``@svm`` / ``@unshared``) and kind (mAP, or seconds for a ratio); VGG16's
    where the table gives several backbones, else the backbone is named."""
    preset = BY_ID.get(preset_id)
    if preset is None or published.empty:
        return DASH
    mine = published[(published["paper"] == preset.paper) & (published["table"] == preset.table)]
    by_key: dict[str, list[pd.Series]] = {}
    for _, r in mine.iterrows():  # in published.csv order: the paper's main backbone first (VGG16 before ZF)
        by_key.setdefault(published_key(r), []).append(r)
    parts = []
    for ref in rows_named(claim):
        label, _, what = ref.partition("@")
        row = next((r for r in preset.rows if r.label == label), None)
        want = what if what in ("svd", "svm", "unshared") else "main"
        hits = [hit for key, which in (row.published.items() if row else ()) if which == want
                for hit in by_key.get(key, ()) if _same_kind(hit, what)]
        if hits:  # VGG16 (the paper scale's backbone) where the table has it, else the table's own
            hit = min(hits, key=lambda h: "vgg16" not in str(h["backbone"]).lower())
            other = "" if "vgg16" in str(hit["backbone"]).lower() else f" ({hit['backbone']})"
            parts.append(f"{ref}: {float(hit['value_num']):g} {hit['unit']}".replace(" %", "").strip() + other)
    return "; ".join(parts) or DASH


def _same_kind(hit: pd.Series, what: str) -> bool:
    """A published row of the quantity a reference reads: mAP (%), or train / test seconds (a time unit)."""
    if what not in ("train_s", "test_s"):
        return str(hit["unit"]) == "%"
    return str(hit["unit"]) in ("s", "ms/img", "s/img", "h") and ("train" in str(hit["metric"])) == (what == "train_s")


def claims(rs: RecordSet, published: pd.DataFrame | None = None) -> Section:
    sec = Section("Claims", "claims",
                  intro="What each paper claims, tested on our runs of its preset: mean ± 95 % confidence interval "
                        "over seeds (Student's t). Reproduced in direction: the intervals are apart the paper's way; "
                        "contradicted: apart the other way; inconclusive: they overlap (or fewer than 2 seeds).")
    rows, data = [], []
    for table in preset_tables(rs.latest):
        for claim in CLAIMS.get(table.preset_id, ()):
            verdict = judge(claim, claim_values(table, claim), table.scale)
            if claim.pretrained_only and verdict.verdict != NOT_TESTABLE and from_random_init(table, claim):
                verdict = Verdict(claim, NOT_TESTABLE, RANDOM_INIT)
            paper = paper_values(table.preset_id, claim, published if published is not None else pd.DataFrame())
            rows.append({"Preset": table.preset_id, "Scale": table.scale, "Claim": claim.text,
                         "Verdict": verdict.verdict, "Ours (mean ± 95 % CI, VOC07 mAP50 % or s)": verdict.detail,
                         "Paper (VOC07 mAP % or s)": paper})
            data.append({"preset": table.preset_id, "scale": table.scale, "claim": claim.text,
                         "verdict": verdict.verdict, "detail": verdict.detail, "paper": paper})
    if not rows:
        sec.add(Note("No preset runs yet: `harness reproduce --all` runs every preset, 3 seeds per row at cpu scale."))
        return sec
    counts = pd.Series([r["Verdict"] for r in rows]).value_counts()
    sec.add(Note("; ".join(f"{v}: {int(counts[v])}" for v in VERDICT_ORDER if v in counts)))
    sec.add(Table("claims", "The papers' claims and our verdicts", display_frame(rows, list(rows[0])),
                  pd.DataFrame(data)))
    return sec
