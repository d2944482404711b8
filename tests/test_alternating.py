"""4-step alternating training: each step changes only the parameters it should."""
import torch

from harness.config import build_config
from harness.data import SyntheticConfig, build_dataset, collate, training_target
from harness.run.builder import build_model
from harness.train.alternating import FrozenRPNProposals, train_alternating


def _snapshot(module):
    return {n: p.detach().clone() for n, p in module.named_parameters()}


def _changed(before, module):
    return {n for n, p in module.named_parameters() if n in before and not torch.equal(before[n], p.detach())}


def test_four_steps_change_only_their_own_parameters():
    torch.manual_seed(0)
    cfg = build_config(overrides={"data.min_size": 96, "data.max_size": 128})
    ds = build_dataset("synthetic", "train", min_size=96, max_size=128,
                       synthetic=SyntheticConfig(train_images=2, seed=1))
    images, targets = collate([ds[0], ds[1]])
    targets = [training_target(t) for t in targets]
    models = []
    changes = {}

    def build():
        m = build_model(cfg, 3)
        models.append(m)
        return m

    def train_step(module, name):
        inner = module.model
        before = _snapshot(inner)
        bn_before = {n: b.clone() for n, b in inner.body.named_buffers()}
        params = [p for p in module.parameters() if p.requires_grad]
        opt = torch.optim.SGD(params, lr=0.01)
        module.train()
        for _ in range(2):
            losses = module(images, targets)
            opt.zero_grad()
            sum(losses.values()).backward()
            opt.step()
        changes[name] = (_changed(before, inner), set(losses),
                         any(not torch.equal(bn_before[n], b) for n, b in inner.body.named_buffers()))
        return type("R", (), {"seconds": 0.0, "iterations": 2})()

    result = train_alternating(build, train_step)

    rpn_only = lambda names: names and all(n.startswith("proposal_source.") for n in names)
    step1, terms1, _ = changes["step1_rpn"]
    assert terms1 == {"loss_rpn_cls", "loss_rpn_box"}
    assert any(n.startswith("body.") for n in step1) and any(n.startswith("proposal_source.") for n in step1)
    assert not any(n.startswith("roi_head.") for n in step1)

    step2, terms2, _ = changes["step2_detector"]
    assert terms2 == {"loss_cls", "loss_box"}
    assert any(n.startswith("body.") for n in step2) and any(n.startswith("roi_head.") for n in step2)
    assert not any(n.startswith("proposal_source.") for n in step2)  # the step-1 RPN is frozen

    step3, terms3, bn3 = changes["step3_rpn_shared"]
    assert terms3 == {"loss_rpn_cls", "loss_rpn_box"} and rpn_only(step3) and not bn3

    step4, terms4, bn4 = changes["step4_detector_shared"]
    assert terms4 == {"loss_cls", "loss_box"}
    assert step4 and all(n.startswith("roi_head.") for n in step4) and not bn4

    # the unshared system keeps two backbones; the final one shares a single backbone
    assert isinstance(result.unshared.proposal_source, FrozenRPNProposals)
    assert not isinstance(result.model.proposal_source, FrozenRPNProposals)
    assert result.iterations == 8 and set(result.stage_seconds) == set(changes)
    result.model.eval()
    result.unshared.eval()
    with torch.no_grad():
        (out,) = result.model([images[0]])
        (out_u,) = result.unshared([images[0]])
    assert set(out) == set(out_u) == {"boxes", "labels", "scores"}


def test_alternating_run_records_shared_and_unshared(tmp_path):
    import json

    from typer.testing import CliRunner

    from harness.cli import app

    args = ["run", "--detector", "faster", "--results", str(tmp_path), "--epochs", "1",
            "--set", "train.scheme=alternating", "--set", "data.synthetic.train_images=2",
            "--set", "data.synthetic.test_images=1", "--set", "data.min_size=64", "--set", "data.max_size=96",
            "--set", "test.warmup_images=0"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    rec = json.loads((tmp_path / "runs.jsonl").read_text().splitlines()[-1])
    assert rec["status"] == "ok" and rec["config"]["train"]["scheme"] == "alternating"
    assert set(rec["timing"]["train_stages"]) == {"step1_rpn", "step2_detector", "step3_rpn_shared",
                                                  "step4_detector_shared"}
    assert "map50_area" in rec["metrics_unshared"] and "map50_area" in rec["metrics"]
