"""Loading a backbone's weights from a local file: completely, or with an exact account of what did not load.

A weights file is a state dict (name -> tensor), possibly under a ``"model"`` or
``"state_dict"`` key, possibly with DataParallel's ``module.`` prefix. Its names
may be

- torchvision's classification names (``conv1.weight``, ``layer3.5.bn2.bias``,
  ``features.28.weight``, ``classifier.0.weight``): an ImageNet ``resnet18`` /
  ``resnet50`` / ``vgg16`` checkpoint; or
- the backbone's own part names (``body.<i>...``, ``box_head.<i>...``), the layout
  of the project's own files (``tiny``, or a body + head saved from any backbone).

Every tensor of the body and the box head is *required*; the classifier's last
layer (torchvision ``fc.*``, ``classifier.6.*``) is the only part of the network
that may be left out or have another shape. A required tensor that stays
unloaded (missing from the file, or of another shape), or a file that holds
another architecture than the one asked for, is a :class:`WeightsError` naming
the first few such tensors and the architecture the file seems to hold, unless
``partial=True`` (``--set model.weights_partial=true``): then what matches is
loaded and the report says ``partial``.
"""
from __future__ import annotations

import hashlib
import pickle
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

SHOWN = 4  # tensors named in a message
_IGNORED_SUFFIX = "num_batches_tracked"  # BatchNorm's step counter: neither needed nor a sign of anything


class WeightsError(ValueError):
    """A weights file that cannot be used (unreadable, pickled code, or not fitting the backbone)."""


@dataclass
class WeightsReport:
    """What loading one file did; :meth:`as_record` is the run record's ``init``."""

    file: str
    sha256: str
    backbone: str
    required: int
    loaded: int = 0
    missing: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # the classifier's last layer (optional, not loaded)
    looks_like: str | None = None
    partial: bool = False

    @property
    def complete(self) -> bool:
        return not self.missing and not self.mismatched

    def summary(self) -> str:
        return (f"{self.loaded} of {self.required} backbone tensors loaded, {len(self.missing)} missing, "
                f"{len(self.mismatched)} shape-mismatched, {len(self.unexpected)} unexpected, "
                f"{len(self.skipped)} of the classifier's last layer left out")

    def as_record(self) -> dict[str, Any]:
        return {
            "kind": "weights",
            "file": self.file,
            "sha256": self.sha256,
            "backbone": self.backbone,
            "required": self.required,
            "loaded": self.loaded,
            "missing": len(self.missing),
            "mismatched": len(self.mismatched),
            "unexpected": len(self.unexpected),
            "skipped": len(self.skipped),
            "looks_like": self.looks_like,
            "partial": self.partial,
        }


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The file's tensors by name (``weights_only=True``: never runs code from the file)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise WeightsError(f"refusing to load {path}: it holds pickled Python objects, not just tensors "
                           "(loaded with weights_only=True, so it cannot run code)") from None
    except Exception as err:  # arbitrary bytes fail in many ways (RuntimeError, EOFError, KeyError, ...)
        raise WeightsError(f"weights file {path} is unreadable (not a torch file, or truncated: "
                           f"{type(err).__name__})") from None
    for _ in range(2):  # {"model": {...}} / {"state_dict": {...}}, as training scripts save them
        if isinstance(state, Mapping):
            inner = next((state[k] for k in ("model", "state_dict") if isinstance(state.get(k), Mapping)), None)
            if inner is not None:
                state = inner
    if not isinstance(state, Mapping):
        raise WeightsError(f"{path}: expected a state dict (name -> tensor), got {type(state).__name__}")
    tensors = {str(k): v for k, v in state.items() if torch.is_tensor(v)}
    if tensors and all(k.startswith("module.") for k in tensors):  # saved from DataParallel / DDP
        tensors = {k[len("module."):]: v for k, v in tensors.items()}
    return tensors


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _names(root: nn.Module, parts: Mapping[str, nn.Module]) -> tuple[set[str], dict[str, str], set[str]]:
    """The root's state-dict names, aliases (``body.0.weight`` -> root name) and the required names."""
    own = root.state_dict(keep_vars=True)
    by_id = {id(t): k for k, t in own.items()}
    alias: dict[str, str] = {}
    required: set[str] = set()
    for prefix, module in parts.items():
        for k, t in module.state_dict(keep_vars=True).items():
            root_name = by_id.get(id(t))
            if root_name is None or k.endswith(_IGNORED_SUFFIX):
                continue
            alias[f"{prefix}.{k}"] = root_name
            required.add(root_name)
    return set(own), alias, required


def match(state: Mapping[str, torch.Tensor], root: nn.Module, parts: Mapping[str, nn.Module], *,
          file: str = "", sha256: str = "", backbone: str = "") -> tuple[WeightsReport, dict[str, torch.Tensor]]:
    """Map the file's names to the root module's; the report and the tensors that can be loaded."""
    own_names, alias, required = _names(root, parts)
    own = root.state_dict(keep_vars=True)
    report = WeightsReport(file=file, sha256=sha256, backbone=backbone, required=len(required))
    usable: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key.endswith(_IGNORED_SUFFIX):
            continue
        name = key if key in own_names else alias.get(key)
        if name is None:
            report.unexpected.append(key)
        elif tuple(own[name].shape) == tuple(value.shape):
            usable[name] = value
        elif name in required:
            report.mismatched.append((name, tuple(value.shape), tuple(own[name].shape)))
        else:
            report.skipped.append(key)
    skipped = set(report.skipped) | {alias.get(k, k) for k in report.skipped}
    report.skipped.extend(sorted(k for k in own_names if k not in required and k not in usable
                                 and k not in skipped and not k.endswith(_IGNORED_SUFFIX)))
    shape_bad = {n for n, _, _ in report.mismatched}
    report.missing = [k for k in own if k in required and k not in usable and k not in shape_bad]
    report.loaded = sum(1 for k in usable if k in required)
    return report, usable


# --------------------------------------------------------------------------- #
# what architecture does a file hold?
# --------------------------------------------------------------------------- #
_RESNETS = {("basic", (2, 2, 2, 2)): "resnet18", ("basic", (3, 4, 6, 3)): "resnet34",
            ("bottleneck", (3, 4, 6, 3)): "resnet50", ("bottleneck", (3, 4, 23, 3)): "resnet101",
            ("bottleneck", (3, 8, 36, 3)): "resnet152"}
_VGGS = {8: "vgg11", 10: "vgg13", 13: "vgg16", 16: "vgg19"}


def _torchvision_architecture(state: Mapping[str, torch.Tensor]) -> str | None:
    blocks = [re.match(r"layer([1-4])\.(\d+)\.conv(\d)\.weight$", k) for k in state]
    blocks = [m for m in blocks if m]
    if blocks and "conv1.weight" in state:
        kind = "bottleneck" if any(m.group(3) == "3" for m in blocks) else "basic"
        depth = tuple(1 + max((int(m.group(2)) for m in blocks if m.group(1) == str(i)), default=-1)
                      for i in range(1, 5))
        return _RESNETS.get((kind, depth), f"a ResNet ({kind} blocks {'-'.join(map(str, depth))})")
    convs = [k for k, v in state.items() if re.match(r"features\.\d+\.weight$", k) and v.dim() == 4]
    if convs and "classifier.0.weight" in state:
        bn = any(re.match(r"features\.\d+\.running_mean$", k) for k in state)
        name = _VGGS.get(len(convs), f"a VGG with {len(convs)} conv layers")
        return f"{name}_bn" if bn and name in _VGGS.values() else name
    return None


def guess_architecture(state: Mapping[str, torch.Tensor],
                       registry: Mapping[str, Callable[[bool], tuple[nn.Module, Any]]]) -> str | None:
    """torchvision names are read off the keys; otherwise the registered backbone the file fills exactly."""
    found = _torchvision_architecture(state)
    if found is not None:
        return found
    best: tuple[int, str] | None = None
    for name, build in registry.items():
        with torch.device("meta"):  # structure only: no memory, no init time
            root, parts = build(True)
        report, _ = match(state, root, {"body": parts.body, "box_head": parts.box_head})
        if report.complete and report.loaded and (best is None or len(report.unexpected) < best[0]):
            best = (len(report.unexpected), name)
    return best[1] if best else None


def _shown(items: list[str]) -> str:
    return ", ".join(items[:SHOWN]) + (f" and {len(items) - SHOWN} more" if len(items) > SHOWN else "")


def load_backbone_weights(root: nn.Module, parts: Mapping[str, nn.Module], path: str | Path, *, backbone: str,
                          registry: Mapping[str, Callable[[bool], tuple[nn.Module, Any]]],
                          partial: bool = False) -> WeightsReport:
    """Load ``path`` into ``root`` (the network the backbone was cut from); see the module docstring.

    Args:
        root: the whole network (its state-dict names are torchvision's for the torchvision backbones).
        parts: ``{"body": ..., "box_head": ...}``, submodules of ``root``: every tensor in them is required.
        backbone: the backbone's name, for messages.
        registry: every registered backbone, to name the architecture a file holds.
        partial: load what fits instead of refusing a file that leaves required tensors unloaded.

    Raises:
        WeightsError: unreadable file, pickled code, nothing fits, or (without ``partial``) a required
            tensor left unloaded or a file of another architecture.
    """
    path = Path(path)
    state = read_state_dict(path)
    report, usable = match(state, root, parts, file=str(path), sha256=sha256_file(path), backbone=backbone)
    report.looks_like = guess_architecture(state, registry)
    other = report.looks_like is not None and report.looks_like != backbone
    if not report.loaded:
        raise WeightsError(f"{path}: no tensor matches the {backbone} backbone's parameters "
                           f"(the file seems to hold {report.looks_like or 'an unknown architecture'})")
    if (not report.complete or other) and not partial:
        problems = []
        if report.mismatched:
            problems.append(f"{len(report.mismatched)} of another shape ("
                            + _shown([f"{n} {list(f)} in the file vs {list(o)}" for n, f, o in report.mismatched]) + ")")
        if report.missing:
            problems.append(f"{len(report.missing)} missing from the file ({_shown(report.missing)})")
        if not problems:
            problems.append(f"{len(report.unexpected)} tensors of the file belong to no {backbone} layer "
                            f"({_shown(report.unexpected)})")
        holds = f"the file seems to hold {report.looks_like}" if report.looks_like else \
            "the file matches none of the known architectures"
        raise WeightsError(
            f"{path} does not fit backbone {backbone}: {report.loaded} of {report.required} backbone tensors "
            f"would load; {'; '.join(problems)}; {holds}. Use the matching --backbone, or "
            "--set model.weights_partial=true to load only the tensors that fit")
    report.partial = not report.complete or other
    root.load_state_dict(usable, strict=False)
    return report
