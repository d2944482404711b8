"""``harness``: the command line. Each command is a thin verb in its own module (parse, build config,
call one harness function); :mod:`harness.cli.ui` holds what they share."""
from __future__ import annotations

import typer

from harness.cli import bench, experiments, predict, pretrain, proposals, report, run

app = typer.Typer(
    help="Benchmark and ablation harness for R-CNN, Fast R-CNN and Faster R-CNN "
    "(one backbone, one data layer, one evaluator).",
    no_args_is_help=True,
    add_completion=False,
)

app.command("run")(run.run)
app.command("datasets")(run.datasets)
app.command("config")(run.show_config)
app.command("sweep")(experiments.sweep)
app.command("reproduce")(experiments.reproduce)
app.command("report", help="Write the HTML (or Markdown) report of every recorded run.")(report.report_command)
app.command("proposals")(proposals.proposals_command)
app.command("pretrain")(pretrain.pretrain_command)
app.command("predict")(predict.predict_command)
app.command("bench")(bench.bench)
app.command("bench-rcnn")(bench.bench_rcnn)
app.command("bench-scaling")(bench.bench_scaling)
app.command("bench-proposals")(bench.bench_proposals)
