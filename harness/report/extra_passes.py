"""Extra test passes that stand for published rows: Fast R-CNN scored by SVMs on its own fc7 (Fast R-CNN
Table 8, ``metrics_svm``) and a selective-search-trained Fast R-CNN tested on a separate RPN's proposals
(Faster R-CNN Table 2's ablations, ``rpn_proposals.variants``). One row per run."""
from __future__ import annotations

import pandas as pd

from .blocks import Note, Section, Table, display_frame, fmt_num, fmt_pct
from .records import RecordSet, num


def _label(r: pd.Series) -> str:
    return " · ".join(str(x) for x in (r.get("preset"), r.get("preset_row")) if isinstance(x, str) and x) or "-"


def extra_passes(rs: RecordSet) -> Section:
    sec = Section("Extra test passes", "extra-passes",
                  intro="Runs whose extra test pass is a published row of its own.")
    ok = rs.ok
    svm = ok[ok["map50_area_svm"].notna()] if "map50_area_svm" in ok.columns else ok.iloc[0:0]
    if len(svm):
        rows, data = [], []
        for _, r in svm.iterrows():
            rows.append({"Run": str(r["run_id"]), "Preset row": _label(r),
                         "softmax VOC07 / area mAP50 (%)": f"{fmt_pct(r['map50_voc07'])} / {fmt_pct(r['map50_area'])}",
                         "SVMs VOC07 / area mAP50 (%)":
                             f"{fmt_pct(r['map50_voc07_svm'])} / {fmt_pct(r['map50_area_svm'])}"})
            data.append({"run_id": r["run_id"], "map50_voc07": r["map50_voc07"], "map50_area": r["map50_area"],
                         "map50_voc07_svm": r["map50_voc07_svm"], "map50_area_svm": r["map50_area_svm"]})
        sec.add(Table("extra_fast_svm", "Fast R-CNN: softmax vs SVMs on its own fc7 (Fast R-CNN Table 8)",
                      display_frame(rows, list(rows[0])), pd.DataFrame(data),
                      "The same trained network, the same test images; boxes from bbox_pred in both."))
    variants = ok[ok["rpn_variants"].map(bool)] if "rpn_variants" in ok.columns else ok.iloc[0:0]
    rows, data = [], []
    for _, r in variants.iterrows():
        for name, v in r["rpn_variants"].items():
            v = v if isinstance(v, dict) else {}
            rows.append({"Run": str(r["run_id"]), "Test proposals": str(name),
                         "mean proposals": fmt_num(num(v.get("mean_proposals"))),
                         "VOC07 mAP50 (%)": fmt_pct(num(v.get("map50_voc07"))),
                         "area mAP50 (%)": fmt_pct(num(v.get("map50_area")))})
            data.append({"run_id": r["run_id"], "variant": name, **{k: num(v.get(k)) for k in
                         ("num_proposals", "mean_proposals", "map50_voc07", "map50_area")}})
    if rows:
        sec.add(Table("extra_rpn_proposals", "Selective-search-trained Fast R-CNN on RPN proposals "
                      "(Faster R-CNN Table 2)", display_frame(rows, list(rows[0])), pd.DataFrame(data),
                      "Its selective-search mAP is the run's main metrics (Accuracy section)."))
    if not sec.blocks:
        sec.add(Note("No run with test.svm or test.rpn_proposals yet (see Fast R-CNN in the README)."))
    return sec
