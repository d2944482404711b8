"""Speed section: per-stage test time and speed-ups measured on one device.

A measured speed-up is only computed between runs on the same device name
(R-CNN's test time on one machine over Fast R-CNN's on another would mean
nothing); otherwise the row says "not measured yet" and what is missing.
"""
from __future__ import annotations

import pandas as pd

from . import plots
from .blocks import DASH, Note, Section, Table, display_frame, fmt_num, fmt_ratio
from .published import COMPARISONS, paper_speedups
from .records import RecordSet, detector_label
from .sections import GROUP_KEYS, group_name, iter_groups, mean_std

NOT_MEASURED = "not measured yet"


def _median(values) -> float | None:
    s = pd.Series([v for v in values if v is not None], dtype=float).dropna()
    return float(s.median()) if len(s) else None


def _ratio(slow: float | None, fast: float | None) -> float | None:
    if slow is None or fast is None or fast <= 0:
        return None
    return slow / fast


def measured_speedups(ok: pd.DataFrame) -> list[dict]:
    """One row per comparison and device (or one "not measured yet" row per comparison).

    Runs are paired on the same device name, and on the same backbone and dataset where
    such pairs exist; the setting column says what was compared.
    """
    out: list[dict] = []
    for label, new, old in COMPARISONS:
        found = False
        for device in sorted(set(ok["device_name"].dropna())):
            on_dev = ok[ok["device_name"] == device]
            a, b = on_dev[on_dev["detector"] == new], on_dev[on_dev["detector"] == old]
            if a.empty or b.empty:
                continue
            pairs = []
            for (backbone, dataset), ga in a.groupby(["backbone", "dataset"], dropna=False):
                gb = b[(b["backbone"] == backbone) & (b["dataset"] == dataset)]
                if not gb.empty:
                    pairs.append((f"backbone {backbone}, data {dataset}", ga, gb))
            if not pairs:  # same device, different backbone/data: say so
                pairs = [(f"{detector_label(new)}: {', '.join(sorted(set(a['backbone'])))} on "
                          f"{', '.join(sorted(set(a['dataset'])))}; {detector_label(old)}: "
                          f"{', '.join(sorted(set(b['backbone'])))} on "
                          f"{', '.join(sorted(set(b['dataset'])))}", a, b)]
            for setting, ga, gb in pairs:
                test = _ratio(_median(gb["test_s_median"]), _median(ga["test_s_median"]))
                train = _ratio(_median(gb["train_s"]), _median(ga["train_s"]))
                noprop = _ratio(_median(gb["test_s_noprop_median"]),
                                _median(ga["test_s_noprop_median"]))
                found = found or test is not None or train is not None
                out.append(dict(comparison=label, source="measured", device=device,
                                setting=setting, runs=f"{len(ga)} + {len(gb)}",
                                backbone=", ".join(sorted({*ga["backbone"], *gb["backbone"]})),
                                dataset=", ".join(sorted({*ga["dataset"], *gb["dataset"]})),
                                run_ids=[*ga["run_id"], *gb["run_id"]],
                                test_speedup=test, train_speedup=train,
                                test_speedup_without_proposals=noprop,
                                status="measured" if test or train else NOT_MEASURED))
        if not found:
            have_new = sorted(set(ok.loc[ok["detector"] == new, "device_name"].dropna()))
            have_old = sorted(set(ok.loc[ok["detector"] == old, "device_name"].dropna()))
            why = (f"needs ok {detector_label(new)} and {detector_label(old)} runs on the same "
                   f"device; {detector_label(new)} ran on: {', '.join(have_new) or 'none'}; "
                   f"{detector_label(old)} ran on: {', '.join(have_old) or 'none'}")
            out = [r for r in out if r["comparison"] != label]
            out.append(dict(comparison=label, source="measured", device=DASH, setting=why,
                            runs="0", test_speedup=None, train_speedup=None,
                            test_speedup_without_proposals=None, status=NOT_MEASURED))
    return out


def speed(rs: RecordSet, published: pd.DataFrame) -> Section:
    sec = Section("Speed", "speed",
                  "Test time per image is the median over test images of each run, then the "
                  "median over the runs of a group. Stage times are median seconds per image "
                  "as recorded by each detector.")
    ok = rs.ok
    bars, rows, data = [], [], []
    all_stages: list[str] = []
    for st in ok["stages"]:
        all_stages += [s for s in (st or {}) if s not in all_stages]
    for key, g in iter_groups(ok):
        stage_med = {}
        for s in all_stages:
            m = _median((st or {}).get(s) for st in g["stages"])
            if m is not None:
                stage_med[s] = m
        total = _median(g["test_s_median"])
        bars.append(plots.StageBar(group_name(key), key[0], stage_med, total))
        row = {"Run group": group_name(key), "Runs": str(len(g))}
        row.update({f"{s} (ms)": fmt_num(1000 * stage_med[s]) if s in stage_med else DASH
                    for s in all_stages})
        row["stage sum (ms)"] = fmt_num(1000 * sum(stage_med.values())) if stage_med else DASH
        row["test (ms/img, median)"] = fmt_num(1000 * total) if total else DASH
        p90 = _median(g["test_s_p90"])
        row["test p90 (ms/img)"] = fmt_num(1000 * p90) if p90 else DASH
        noprop = _median(g["test_s_noprop_median"])
        row["without proposals (ms/img)"] = fmt_num(1000 * noprop) if noprop else DASH
        train, _, _ = mean_std(g["train_s"])
        row["train (s)"] = fmt_num(train)
        rows.append(row)
        data.append(dict(zip(GROUP_KEYS, key), runs=len(g),
                         **{f"stage_{s}_s": stage_med.get(s) for s in all_stages},
                         test_s_per_img_median=total, test_s_per_img_p90=p90,
                         test_s_per_img_without_proposals=noprop, train_s=train))
    if rows:
        sec.add(plots.stage_bars(bars))
        sec.add(Table("speed_stages", "Time per stage", display_frame(rows, list(rows[0])),
                      pd.DataFrame(data)))
    else:
        sec.add(Note("No successful run yet.", "warning"))
    _train_stage_table(sec, ok)

    measured = measured_speedups(ok)
    papers = paper_speedups(published)
    rows, data = [], []
    for label, _, _ in COMPARISONS:
        for m in (r for r in measured if r["comparison"] == label):
            rows.append({"Comparison": label, "Source": "measured (this harness)",
                         "Device": m["device"], "Setting": m["setting"],
                         "Test speed-up": fmt_ratio(m["test_speedup"]) if m["test_speedup"]
                         else m["status"],
                         "Train speed-up": fmt_ratio(m["train_speedup"]),
                         "Test speed-up excl. proposals":
                             fmt_ratio(m["test_speedup_without_proposals"])})
            data.append(m)
        for p in (r for r in papers if r["comparison"] == label):
            setting = ", ".join(x for x in (p["backbone"], p["setting"]) if x)
            is_test = p["kind"] == "test"
            rows.append({"Comparison": label, "Source": f"{p['paper']}, {p['table']}",
                         "Device": "paper's hardware", "Setting": setting,
                         "Test speed-up": fmt_ratio(p["ratio"]) if is_test else DASH,
                         "Train speed-up": DASH if is_test else fmt_ratio(p["ratio"]),
                         "Test speed-up excl. proposals": DASH})
            data.append(dict(comparison=label, source=f"{p['paper']}, {p['table']}",
                             device="", setting=setting, runs="",
                             test_speedup=p["ratio"] if is_test else None,
                             train_speedup=None if is_test else p["ratio"],
                             test_speedup_without_proposals=None,
                             status=f"paper ({p['derived_from']})"))
    sec.add(Table("speed_ratios", "Speed-ups: measured on one device, beside the papers'",
                  display_frame(rows, list(rows[0])), pd.DataFrame(data),
                  "Ratio = the slower method's time over the faster one's (higher is faster). "
                  "Papers' ratios are taken from published.csv, or derived from two of its "
                  "time rows (CSV column status says which)."))
    return sec


def _train_stage_table(sec: Section, ok: pd.DataFrame) -> None:
    names: list[str] = []
    for st in ok["train_stages"]:
        names += [s for s in (st or {}) if s not in names]
    if not names:
        return
    rows, data = [], []
    for key, g in iter_groups(ok):
        med = {s: _median((st or {}).get(s) for st in g["train_stages"]) for s in names}
        if all(v is None for v in med.values()):
            continue
        rows.append({"Run group": group_name(key),
                     **{f"{s} (s)": fmt_num(v) for s, v in med.items()}})
        data.append(dict(zip(GROUP_KEYS, key), **{f"train_{s}_s": v for s, v in med.items()}))
    if rows:
        sec.add(Table("speed_train_stages", "Training time per stage",
                      display_frame(rows, list(rows[0])), pd.DataFrame(data)))
