"""Fully connected layers that run inference through oneDNN with a packed weight on the CPU.

PyTorch's CPU ``F.linear`` in float32 calls MKL's SGEMM. On the AMD EPYC machine this project was
measured on, MKL does not use its AVX-512 code path and runs VGG16's fc6 (300 RoIs x 25088 -> 4096,
61.6 GFLOPs) at ~130 GFLOP/s, against the ~190 GFLOP/s that oneDNN reaches on the backbone's
convolutions on the same cores. oneDNN's inner-product primitive, given a weight reordered once into
its blocked layout (``mkldnn::_reorder_linear_weight``, the path ``torch.compile`` takes for frozen
CPU weights), does the same layer in ~300 ms instead of ~500 ms.

:class:`PackedLinear` is an ``nn.Linear`` (same parameters, same state-dict keys) whose forward takes
that path only where it gives the same result up to float rounding and nothing else can notice:
float32 on the CPU, no gradient being recorded, no autocast, and no ``TorchDispatchMode`` active
(``torch.utils.flop_counter`` and fake tensors see the plain ``aten`` ops). Training always runs
``F.linear``: the weight changes every step and re-packing it costs more than it saves. The packed
copy is cached per weight version (``_version`` moves on every in-place update, so an optimizer
step or ``load_state_dict`` invalidates it), dropped when the module goes back to training mode,
and never copied or pickled.
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils._python_dispatch import _get_current_dispatch_mode


@functools.cache  # a property of the build: looked up once, not on every forward
def packed_path_available() -> bool:
    """Whether this PyTorch build has the oneDNN inner-product ops the packed path calls."""
    return (
        torch.backends.mkldnn.is_available()
        and hasattr(torch.ops.mkldnn, "_reorder_linear_weight")
        and hasattr(torch.ops.mkldnn, "_linear_pointwise")
    )


class PackedLinear(nn.Linear):
    """``nn.Linear`` whose CPU float32 inference runs oneDNN on a cached, packed weight."""

    _packed: tuple[tuple[int, int], Tensor] | None = None

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> "PackedLinear":
        """A ``PackedLinear`` sharing ``linear``'s parameters (no copy)."""
        new = cls.__new__(cls)
        nn.Module.__init__(new)
        new.in_features, new.out_features = linear.in_features, linear.out_features
        new.weight = linear.weight
        new.bias = linear.bias
        new.train(linear.training)
        return new

    def _use_packed(self, x: Tensor) -> bool:
        return (
            not torch.is_grad_enabled()
            and x.device.type == "cpu"
            and x.dtype == torch.float32
            and self.weight.dtype == torch.float32
            and not torch.is_autocast_enabled("cpu")
            and _get_current_dispatch_mode() is None
            and packed_path_available()
        )

    def packed_weight(self) -> Tensor:
        """The weight in oneDNN's blocked layout, packed once per weight version."""
        key = (self.weight.data_ptr(), self.weight._version)
        if self._packed is None or self._packed[0] != key:
            self._packed = None  # free the old copy before making the new one
            self._packed = (key, torch.ops.mkldnn._reorder_linear_weight(self.weight.detach(), None))
        return self._packed[1]

    def forward(self, x: Tensor) -> Tensor:
        if not self._use_packed(x):
            return F.linear(x, self.weight, self.bias)
        bias = None if self.bias is None else self.bias.detach()
        return torch.ops.mkldnn._linear_pointwise(x, self.packed_weight(), bias, "none", [None], "")

    def train(self, mode: bool = True) -> "PackedLinear":
        if mode:
            self._packed = None
        return super().train(mode)

    def __getstate__(self) -> dict:
        # the packed copy is an opaque oneDNN tensor: it can be neither deep-copied nor pickled
        state = dict(super().__getstate__())
        state.pop("_packed", None)
        return state


def pack_linears(module: nn.Module) -> nn.Module:
    """Replace, in place, every plain ``nn.Linear`` under ``module`` by a :class:`PackedLinear` on the
    same parameters; returns ``module``. A no-op where this build lacks oneDNN."""
    if not packed_path_available():
        return module
    for child in list(module.modules()):
        for child_name, sub in list(child.named_children()):
            if type(sub) is nn.Linear:
                setattr(child, child_name, PackedLinear.from_linear(sub))
    return module
