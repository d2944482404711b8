"""The Claims section: each preset's claims judged from runs matched to its rows by config, and every
claim names rows its preset has."""
import csv
import json

import pytest

from harness.config import to_dict
from harness.config.claims import rows_named
from harness.config.preset_claims import CLAIMS
from harness.config.presets import BY_ID, PRESETS, resolve
from harness.report.build import build_report
from harness.report.claims import REFERENCE_COLUMNS
from harness.report.verdicts import NOT_TESTABLE
from harness.run.schema import SCHEMA_VERSION


def test_every_claim_names_rows_of_its_preset():
    assert set(CLAIMS) <= {p.id for p in PRESETS}
    for preset_id, claims in CLAIMS.items():
        labels = {r.label for r in BY_ID[preset_id].rows}
        for claim in claims:
            for ref in rows_named(claim):
                label, _, what = ref.partition("@")
                assert label in labels, (preset_id, claim.text, label)
                assert not what or what in REFERENCE_COLUMNS, (preset_id, ref)


def _record(point, row, map07, test_s):
    return {"schema_version": SCHEMA_VERSION, "run_id": f"{row}-{point.config.seed}", "status": "ok",
            "detector": point.config.detector, "dataset": point.config.data.dataset, "backbone": "tiny",
            "seed": point.config.seed, "init": "random", "profile": "cpu",
            "config": to_dict(point.config),
            "metrics": {"map50_voc07": map07, "map50_area": map07}, "timing": {"test_s_per_img": {"median": test_s}},
            "started": "2026-12-05T00:00:00+00:00", "finished": "2026-12-05T00:01:00+00:00",
            "git_sha": None, "versions": {}, "device": {"type": "cpu", "name": "test", "threads": 2}}


def _claims_rows(tmp_path, records, preset_id):
    """The report's claims.csv rows of ``preset_id`` from ``records``."""
    results = tmp_path / "results"
    results.mkdir()
    (results / "runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    build_report(results, tmp_path / "out")
    with open(tmp_path / "out" / "claims.csv", newline="") as fh:
        return [r for r in csv.DictReader(fh) if r["preset"] == preset_id]


@pytest.mark.parametrize("values, verdict", [
    ({"lambda 0.1": 0.70, "lambda 1": 0.800, "lambda 10": 0.801, "lambda 100": 0.802}, "reproduced in direction"),
    ({"lambda 0.1": 0.70, "lambda 1": 0.80, "lambda 10": 0.80, "lambda 100": 0.60}, "contradicted"),
])
def test_lambda_insensitivity_is_judged_from_the_matched_runs(tmp_path, values, verdict):
    preset = BY_ID["faster-table9"]
    records = []
    for row, point in resolve(preset, scale="cpu", seeds=3):
        noise = 0.001 * point.config.seed
        records.append(_record(point, row.label, values[row.label] + noise, 0.02))
    rows = _claims_rows(tmp_path, records, "faster-table9")
    assert [r["verdict"] for r in rows] == [verdict]
    assert "(n=3)" in rows[0]["detail"]
    # the paper's numbers beside ours, from harness/reference/published.csv (Table 9: 68.9 / 69.9 / 69.1)
    assert rows[0]["paper"] == "lambda 1: 68.9; lambda 10: 69.9; lambda 100: 69.1"


@pytest.mark.parametrize("init, verdict", [
    ({"kind": "pretrained", "label": "pretrained (tiny-x, sha256 y)"}, "reproduced in direction"),
    ("random", NOT_TESTABLE),
])
def test_fine_tuning_claims_need_pretrained_runs(tmp_path, init, verdict):
    """Fast R-CNN Table 5 (which layers to fine-tune) is about pre-trained features: judged on runs from the
    built-in pre-training (the cpu default), not testable on runs from random init, whatever their numbers."""
    values = {"fine-tune all conv layers": 0.60, "freeze every conv stage (fc layers only)": 0.40}
    records = []
    for row, point in resolve(BY_ID["fast-table5"], scale="cpu", seeds=3):
        if row.label in values:
            records.append({**_record(point, row.label, values[row.label] + 0.001 * point.config.seed, 0.02),
                            "init": init})
    rows = _claims_rows(tmp_path, records, "fast-table5")
    assert [r["verdict"] for r in rows] == [verdict]
    assert ("random init" in rows[0]["detail"]) == (init == "random")


def test_paper_values_follow_the_claims_pass_and_kind():
    from harness.report.claims import paper_values
    from harness.report.published import load_published

    published = load_published()
    t3, = CLAIMS["faster-table3"]
    # shared (main) and unshared (@unshared): two passes of one row, two published numbers
    assert paper_values("faster-table3", t3, published).endswith("(step 4): 69.9; "
                                                                 "4-step alternating: unshared (step 2) and "
                                                                 "shared (step 4)@unshared: 68.5")
    # a ratio of test times reads the time rows (VGG16's where the table also has ZF), never the mAP
    timed = next(c for c in CLAIMS["faster-table5"] if "any factor" in c.text)
    assert paper_values("faster-table5", timed, published) == (
        "Fast R-CNN + selective search@test_s: 1830 ms/img; Faster R-CNN (RPN)@test_s: 198 ms/img")
    # a table without VGG16 names its backbone
    assert "(AlexNet)" in paper_values("rcnn-table2", CLAIMS["rcnn-table2"][1], published)
