"""Built-in supervised pre-training: the classification set, `harness pretrain`, and loading into a run."""
import hashlib
import json

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from harness.cli import app
from harness.data import classification as cls
from harness.data.errors import DatasetError

runner = CliRunner()
TINY_PRETRAIN = ["--train-images", "32", "--test-images", "8", "--batch-size", "16", "--epochs", "1"]


def test_classification_set_has_many_classes_none_of_them_a_detection_class():
    assert cls.NUM_CLASSES >= 100 and len(set(cls.CLASS_NAMES)) == cls.NUM_CLASSES
    assert ("ellipse", "spots", "red") not in cls.CLASSES  # the detection set's disc
    assert ("rectangle", "stripes", "blue") not in cls.CLASSES  # its box


def test_classification_set_is_deterministic_and_seeded():
    cfg = cls.ClassificationConfig(train_images=4, test_images=2, seed=3)
    a_img, a_box, a_label = cls.sample(cfg, "train", 1)
    b_img, b_box, b_label = cls.sample(cls.ClassificationConfig(train_images=4, test_images=2, seed=3), "train", 1)
    assert np.array_equal(a_img, b_img) and np.array_equal(a_box, b_box) and a_label == b_label
    other = cls.sample(cls.ClassificationConfig(train_images=4, test_images=2, seed=4), "train", 1)[0]
    assert not np.array_equal(a_img, other)
    assert not np.array_equal(a_img, cls.sample(cfg, "test", 1)[0])  # held-out split: its own stream
    images, boxes, labels = cls.generate(cfg, "train")
    assert images.shape == (4, 96, 96, 3) and images.dtype == np.uint8
    assert np.array_equal(images[1], a_img) and labels[1] == a_label  # generate == sample, in any order
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2:] <= 96).all() and (boxes[:, 2:] > boxes[:, :2] + 10).all()
    assert ((labels >= 0) & (labels < cls.NUM_CLASSES)).all()


def test_classification_config_rejects_bad_sizes():
    with pytest.raises(DatasetError):
        cls.ClassificationConfig(train_images=0)


def test_every_shape_draws_a_filled_silhouette():
    masks = {}
    for shape in cls.SHAPES:
        mask = cls.shape_mask(shape, np.random.default_rng(0), 40, 30)
        assert mask.shape == (40, 30) and 0.15 < mask.mean() <= 1.0, shape
        masks[shape] = mask.tobytes()
    assert len(set(masks.values())) == len(cls.SHAPES)  # eight different silhouettes


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory):
    out = tmp_path_factory.mktemp("pre") / "tiny.pt"
    result = runner.invoke(app, ["pretrain", "--backbone", "tiny", "--out", str(out), *TINY_PRETRAIN])
    assert result.exit_code == 0, result.output
    return out


def test_pretrain_writes_a_loadable_file_and_a_true_sidecar(pretrained):
    state = torch.load(pretrained, map_location="cpu", weights_only=True)
    assert "body.0.0.weight" in state and "box_head.1.weight" in state  # the backbone's own module names
    assert not any(k.startswith("fc.") for k in state)  # the classifier's last layer is not part of it
    side = json.loads((pretrained.parent / "tiny.pt.json").read_text())
    assert side["sha256"] == hashlib.sha256(pretrained.read_bytes()).hexdigest()
    assert side["num_classes"] == len(side["classes"]) == cls.NUM_CLASSES
    assert side["epochs"] == 1 and 0.0 <= side["top1_heldout"] <= 1.0 and side["wall_s"] > 0
    assert side["config"]["train_images"] == 32 and side["config"]["backbone"] == "tiny"


def test_the_same_recipe_gives_the_same_bytes_under_any_file_name(pretrained, tmp_path):
    """The sidecar's (and every record's) SHA-256 names the weights: pre-training the same recipe again, into
    another file, gives the same bytes (``torch.save`` to a path once wrote the temporary file's name in)."""
    again = tmp_path / "another-name.pt"
    result = runner.invoke(app, ["pretrain", "--backbone", "tiny", "--out", str(again), *TINY_PRETRAIN])
    assert result.exit_code == 0, result.output
    assert again.read_bytes() == pretrained.read_bytes()


def _first_conv(cfg) -> torch.Tensor:
    """The first conv layer's weights of the network a run builds from ``cfg``, under one seed (so two random
    inits are equal and a loaded one differs)."""
    from harness.run.builder import build_model

    torch.manual_seed(0)
    return build_model(cfg, num_classes=3).body[0][0].weight.detach().clone()


def test_pretrained_weights_are_loaded_into_a_run(pretrained):
    state = torch.load(pretrained, map_location="cpu", weights_only=True)
    random = _first_conv(_cfg(**{"model.init": "random"}))
    loaded = _first_conv(_cfg(**{"model.weights": str(pretrained)}))
    assert torch.equal(loaded, state["body.0.0.weight"])
    assert not torch.equal(loaded, random)


def test_a_default_run_starts_from_the_cached_pretraining(tmp_path, monkeypatch, tiny_run_args):
    """`harness run` with no init option, at the cpu profile: the default recipe is trained on first use,
    the record says so, and the network the run builds holds the file's weights (not random init's)."""
    from harness.train.pretrain import resolve_init

    monkeypatch.setenv("HARNESS_PRETRAIN_CACHE", str(tmp_path / "cache"))
    args = list(tiny_run_args)
    at = args.index("model.init=random")
    del args[at - 1:at + 1]  # "--set", "model.init=random": the profile's default decides
    result = runner.invoke(app, ["run", "--results", str(tmp_path / "r"), *args])
    assert result.exit_code == 0, result.output
    [file] = (tmp_path / "cache").glob("tiny-*.pt")
    record = json.loads((tmp_path / "r" / "runs.jsonl").read_text())
    assert record["config"]["model"]["init"] == "pretrained"
    assert record["init"]["kind"] == "pretrained" and record["init"]["partial"] is False
    assert record["init"]["sha256"] == hashlib.sha256(file.read_bytes()).hexdigest()
    state = torch.load(file, map_location="cpu", weights_only=True)
    built = _first_conv(resolve_init(_cfg())[0])  # as the run builds it
    random = _first_conv(_cfg(**{"model.init": "random"}))
    assert torch.equal(built, state["body.0.0.weight"])
    assert not torch.equal(built, random)


def test_pretrain_bad_input_is_one_line_exit_2(tmp_path):
    result = runner.invoke(app, ["pretrain", "--epochs", "0", "--out", str(tmp_path / "x.pt")])
    assert result.exit_code == 2 and "error:" in result.output
    result = runner.invoke(app, ["pretrain", "--train-images", "8", "--batch-size", "16", "--test-images", "4",
                                 "--out", str(tmp_path / "x.pt")])
    assert result.exit_code == 2 and "batch_size" in result.output


def test_cli_defaults_are_the_cached_default_recipe():
    import inspect

    from harness.cli.pretrain import pretrain_command
    from harness.train.pretrain import PretrainConfig

    defaults = PretrainConfig()
    for name, param in inspect.signature(pretrain_command).parameters.items():
        if hasattr(defaults, name):
            value = param.default.default
            assert getattr(value, "value", value) == getattr(defaults, name), name


def _cfg(**overrides):
    from harness.config import build_config

    return build_config(detector="faster", profile="cpu", overrides=overrides)


def test_init_modes():
    from harness.config import ConfigError
    from harness.train.pretrain import init_mode, resolve_init

    assert init_mode(_cfg()) == "pretrained"  # the cpu profile's default for tiny (config.default_init)
    assert init_mode(_cfg(**{"model.init": "random"})) == "random"
    assert init_mode(_cfg(**{"model.init": "pretrained"})) == "pretrained"
    assert init_mode(_cfg(**{"model.init": "pretrained-body", "model.weights": "w.pt"})) == "weights"
    assert init_mode(_cfg(**{"model.weights": "w.pt"})) == "weights"
    assert resolve_init(_cfg(**{"model.init": "random"})) == (_cfg(**{"model.init": "random"}), "random")
    with pytest.raises(ConfigError, match="model.init"):  # before any work: at config time
        _cfg(**{"model.init": "pretrained", "model.backbone": "vgg16"})
    with pytest.raises(ConfigError):
        _cfg(**{"model.init": "auto"})


def test_pretrained_init_pretrains_once_and_the_record_says_so(tmp_path, monkeypatch, tiny_run_args):
    """model.init=pretrained-body: the (session-wide tiny) default recipe is trained on first use, then reused."""
    from harness.train import pretrain

    monkeypatch.setenv("HARNESS_PRETRAIN_CACHE", str(tmp_path / "cache"))
    args = list(tiny_run_args)
    at = args.index("model.init=random")
    args[at] = "model.init=pretrained-body"
    result = runner.invoke(app, ["run", "--results", str(tmp_path / "r"), *args])
    assert result.exit_code == 0, result.output
    files = [f for f in (tmp_path / "cache").glob("tiny-*.pt") if not f.name.endswith(".body.pt")]
    assert len(files) == 1
    digest = hashlib.sha256(files[0].read_bytes()).hexdigest()
    record = json.loads((tmp_path / "r" / "runs.jsonl").read_text().splitlines()[0])
    assert record["config"]["model"]["init"] == "pretrained-body"
    body_file = files[0].with_name(files[0].stem + ".body.pt")  # the body alone
    body = torch.load(body_file, weights_only=True)
    assert body and all(k.startswith("body.") for k in body)
    init = record["init"]  # the load report, labelled as the built-in pre-training; the FC head left random
    assert init["kind"] == "pretrained-body" and init["partial"] is True and init["missing"] > 0
    assert init["label"].startswith("pretrained-body (synthetic-cls157-tiny-")
    assert init["label"].endswith(f"sha256 {hashlib.sha256(body_file.read_bytes()).hexdigest()})")
    assert init["sha256"] == hashlib.sha256(body_file.read_bytes()).hexdigest()

    def no_training(*a, **k):
        raise AssertionError("the cached pre-training was trained again")

    monkeypatch.setattr(pretrain, "pretrain", no_training)
    path, meta = pretrain.cached_pretrained("tiny")
    assert path == files[0] and meta["sha256"] == digest
    cfg, init = pretrain.resolve_init(_cfg(**{"model.init": "pretrained"}))  # body + FC head: the file itself
    assert cfg.model.weights == str(files[0]) and init == f"pretrained ({meta['name']}, sha256 {digest})"
