"""harness reproduce: every preset resolves to valid configs at both scales."""
import json

import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.config import flatten_dict, to_dict
from harness.config.capabilities import unused_keys
from harness.config.presets import PRESETS, cpu_base, resolve

runner = CliRunner()

# Keys two rows of one table may differ in besides the keys it varies and the keys one of the two detectors does
# not read: key -> (the detectors whose rows may differ in it, why that is not a confound).
EXEMPT = {
    "detector": (("faster", "fast", "rcnn"), "the method itself: a table comparing detectors declares it"),
    "test.svd": (("fast", "rcnn"), "an extra test pass after the main one (Fast R-CNN 3.1, on by default for "
                 "fast, refused for R-CNN): the main pass's numbers are the same with it or without"),
    "train.epochs": (("rcnn",), "R-CNN's train.* schedule drives its fine-tuning on warped regions, another loop "
                     "than the image mini-batches of Fast/Faster R-CNN (harness.config.rcnn: its own defaults)"),
    "test.max_images": (("rcnn",), "cpu scale: R-CNN runs its CNN on every warped region, so it is tested on the "
                        "first 100 of the 200 test images (presets.CPU_DETECTOR; stated in each record)"),
    "train.lr": (("rcnn",), "as train.epochs: R-CNN's fine-tuning lr (cpu profile: 0.01 from random init)"),
}


def test_preset_ids_and_row_labels_are_unique():
    assert len(PRESETS) >= 10 and len({p.id for p in PRESETS}) == len(PRESETS)
    for p in PRESETS:  # a row's label names its runs in the records (tags.preset_row)
        assert len({r.label for r in p.rows}) == len(p.rows), p.id


def _declared(preset, row, scale):
    """What the row says about its config at ``scale`` (in the dry run's JSON form: tuples as lists)."""
    declared = {**(cpu_base(row.detector) if scale == "cpu" else {}), **row.overrides,
                **(row.paper_overrides if scale == "paper" else {})}
    return json.loads(json.dumps(declared))


@pytest.mark.parametrize("preset", PRESETS, ids=[p.id for p in PRESETS])
@pytest.mark.parametrize("scale", ["cpu", "paper"])
def test_every_preset_row_resolves_to_its_own_config(preset, scale):
    """`harness reproduce ID --dry-run`: every run's config carries its row's overrides, and two rows of a
    table differ only in the keys the table varies (or in the detector), never nowhere."""
    result = runner.invoke(app, ["reproduce", preset.id, "--scale", scale, "--dry-run", "--seeds", "2"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    assert len(lines) == 2 * len(preset.rows)
    assert [(line["row"], flatten_dict(line["config"])["seed"]) for line in lines] == \
        [(row.label, seed) for row in preset.rows for seed in (0, 1)]
    configs = {(line["row"], flatten_dict(line["config"])["seed"]): flatten_dict(line["config"]) for line in lines}
    varied = set(preset.varies)
    # every key a row sets is one the table declares it varies
    assert set().union(*(row.overrides for row in preset.rows), *(row.paper_overrides for row in preset.rows)) \
        <= varied, preset.id
    for row in preset.rows:
        for seed in (0, 1):
            cfg = configs[row.label, seed]
            assert cfg["detector"] == row.detector and cfg["profile"] == scale
            assert cfg["model.backbone"] == ("vgg16" if scale == "paper" else "tiny")
            for key, value in _declared(preset, row, scale).items():
                assert cfg[key] == value, (row.label, key)
    runs_by_label = {row.label: point for row, point in resolve(preset, scale=scale)}
    for seed in (0, 1):
        for i, a in enumerate(preset.rows):
            for b in preset.rows[i + 1:]:
                ca, cb = configs[a.label, seed], configs[b.label, seed]
                differ = {k for k in ca if ca[k] != cb[k]}
                assert differ, (a.label, b.label)  # two rows that are one run
                # a controlled comparison: only the declared keys change, and keys one of the two detectors
                # does not read (harness.config.capabilities), and the exemptions below
                unread = set(unused_keys(runs_by_label[a.label].config)) | \
                    set(unused_keys(runs_by_label[b.label].config))
                exempt = {k for k, (dets, _) in EXEMPT.items() if {a.detector, b.detector} & set(dets)}
                confounds = differ - varied - unread - exempt
                assert not confounds, (preset.id, scale, a.label, b.label, sorted(confounds))
    # and the resolved points are the same the runner gets
    runs = resolve(preset, scale=scale, seeds=2)
    assert [json.loads(json.dumps(flatten_dict(to_dict(point.config)))) for _, point in runs] == \
        [flatten_dict(line["config"]) for line in lines]
    assert len({point.key for _, point in runs}) == len(runs)


def test_presets_name_published_tables():
    import csv
    from pathlib import Path

    import harness

    with (Path(harness.__file__).parent / "reference" / "published.csv").open() as f:
        tables = {(r["paper"], r["table"]) for r in csv.DictReader(f)}
    for p in PRESETS:
        if p.table.startswith("Table"):
            assert (p.paper, p.table) in tables, p.id


def test_reproduce_list_and_dry_run():
    result = runner.invoke(app, ["reproduce", "--list"])
    assert result.exit_code == 0 and "fast-table4" in result.output
    result = runner.invoke(app, ["reproduce", "faster-table9", "--dry-run", "--seeds", "2"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines() if line.startswith("{")]
    assert len(rows) == 8
    assert sorted({r["config"]["model"]["rpn_box_weight"] for r in rows}) == [0.01, 0.1, 1.0, 10.0]
    assert runner.invoke(app, ["reproduce", "no-such-table"]).exit_code == 2


def test_every_published_row_a_preset_row_names_exists():
    """Row.published keys are "method · setting" of published.csv rows of the preset's table; a typo would
    leave "Against the papers" pairing nothing."""
    from harness.report.papers import _PASS_COLS
    from harness.report.published import load_published

    pub = load_published()
    keys = {(r["paper"], r["table"], " · ".join(x for x in (r["method"], r["setting"]) if x))
            for _, r in pub.iterrows()}
    named = 0
    for p in PRESETS:
        for row in p.rows:
            for key, which in row.published.items():
                assert (p.paper, p.table, key) in keys, (p.id, row.label, key)
                assert which in _PASS_COLS, (p.id, row.label, which)  # a pass the report knows how to read
                named += 1
    assert named >= 25


def test_cpu_scale_is_synthetic_hard_and_its_reductions_are_stated():
    from harness.config.presets import CPU_REDUCTIONS, Row, reductions

    preset = next(p for p in PRESETS if p.id == "proposal-sweep")
    row, point = resolve(preset, scale="cpu")[0]
    cfg = point.config
    assert cfg.data.dataset == "synthetic-hard" and cfg.proposals.image_min_size is None
    # every cut of the cpu scale, with its reason (Fast R-CNN's own: selective-search time from the cache);
    # the backbone starts from the built-in pre-training, so random init is not one of them
    assert cfg.model.init == "pretrained"
    assert set(reductions(row, cfg)) == set(CPU_REDUCTIONS) - {"model.init"} | {"proposals.test_timing"}
    # an invocation on other data lifts the synthetic-hard cut; a row's own cut is added; random init is one
    other = resolve(preset, scale="cpu", extra={"data.dataset": "synthetic", "model.init": "random"})[0][1].config
    own = Row("x", "fast", reductions={"test.max_images": "why"})
    assert set(reductions(own, other)) == set(CPU_REDUCTIONS) - {"data.synthetic_hard.train_images"} | {
        "test.max_images", "proposals.test_timing"}


def test_rcnn_rows_state_their_own_cpu_cuts():
    from harness.config.presets import CPU_DETECTOR, reductions

    preset = next(p for p in PRESETS if p.id == "fast-table4")
    (rcnn_row, rcnn_point), (fast_row, fast_point) = resolve(preset, scale="cpu")
    assert rcnn_point.config.test.max_images == 100 and fast_point.config.test.max_images is None
    assert rcnn_point.config.train.epochs == 4 and fast_point.config.train.epochs == 6
    cuts = reductions(rcnn_row, rcnn_point.config)
    assert cuts["train.epochs"] == CPU_DETECTOR["rcnn"]["train.epochs"][1]
    assert "test.max_images" in cuts and "test.max_images" not in reductions(fast_row, fast_point.config)
