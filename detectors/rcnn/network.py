"""The region CNN: warped crop -> backbone body -> pool5 -> fc6 -> fc7 (-> K+1 softmax).

R-CNN runs the *whole* network on every warped region (section 2.1). Here that
network is exactly the harness backbone that Fast and Faster R-CNN share
(:mod:`detectors.backbones`): the stride-16 conv body, max-pooled to the head's
``P x P`` grid (VGG16's pool5: its last max-pool, which the shared body drops),
then the backbone's own FC box head. A crop of ``S = 32 P`` pixels (224 for
VGG16) is max-pooled 2 x 2, as VGG16's pool5 does; ``S = 16 P`` (112 for
``tiny``) gives exactly ``P x P`` body cells; a smaller crop (the cpu profile's
64, 4 x 4 cells) has its cells repeated onto the grid, as RoI max pooling does
for a small RoI.

Feature layers (R-CNN section 3.2, table 2 ablation): ``pool5`` = pooled body
output flattened; ``fc6`` = after the head's first Linear (+ ReLU, + Dropout for
VGG16); ``fc7`` = the head's output. ResNet heads (res5) have no fc6.

Shape shorthand: R = regions, C = body channels, P = pooled size, D = feature size.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

LAYERS = ("pool5", "fc6", "fc7")


def split_box_head(box_head: nn.Module) -> tuple[nn.Module, nn.Module] | None:
    """Split a backbone's FC head into ``(to_fc6, fc6_to_fc7)`` so that ``fc6_to_fc7(to_fc6(x)) == box_head(x)``.

    ``to_fc6`` runs up to and including the first ``nn.Linear`` and the activation /
    dropout modules right after it (tiny: ``Flatten, Linear, ReLU``; VGG16:
    ``Flatten, Linear, ReLU, Dropout``). Returns None for heads without a Linear
    layer (the ResNet C4 head), which have no fc6.
    """
    if not isinstance(box_head, nn.Sequential):
        return None
    modules = list(box_head.children())
    first = next((i for i, m in enumerate(modules) if isinstance(m, nn.Linear)), None)
    if first is None:
        return None
    end = first + 1
    while end < len(modules) and isinstance(modules[end], (nn.ReLU, nn.Dropout)):
        end += 1
    return nn.Sequential(*modules[:end]), nn.Sequential(*modules[end:])


def layer_dims(*, out_channels: int, pooled_size: int, box_head: nn.Module, representation_size: int) -> dict[str, int]:
    """Feature size D of each available layer."""
    dims = {"pool5": out_channels * pooled_size * pooled_size, "fc7": representation_size}
    split = split_box_head(box_head)
    if split is not None:
        first_linear = next(m for m in split[0].modules() if isinstance(m, nn.Linear))
        dims["fc6"] = first_linear.out_features
    return dims


class RegionCNN(nn.Module):
    """The backbone applied to warped crops, with a (K+1)-way classifier for fine-tuning.

    Args:
        body: stride-16 conv body, ``[R, 3, S, S] -> [R, C, S/16, S/16]``.
        box_head: the backbone's FC head, pooled ``[R, C, P, P] -> [R, D]``.
        out_channels, representation_size, pooled_size: C, D, P.
        num_classes: K (background excluded).
    """

    def __init__(
        self,
        *,
        body: nn.Module,
        box_head: nn.Module,
        out_channels: int,
        representation_size: int,
        pooled_size: int,
        num_classes: int,
    ) -> None:
        super().__init__()
        self.body, self.box_head, self.pooled_size = body, box_head, pooled_size
        self.dims = layer_dims(
            out_channels=out_channels, pooled_size=pooled_size, box_head=box_head,
            representation_size=representation_size,
        )
        # the split shares the head's module objects (no copy), and a tuple keeps it out of
        # the state dict: fine-tuning, .to(device) and checkpoints see each weight once
        self._split: tuple[nn.Module, nn.Module] | None = split_box_head(box_head)
        # the new (K+1)-way output replacing the ImageNet classifier (R-CNN section 2.3)
        self.cls_score = nn.Linear(representation_size, num_classes + 1)
        nn.init.normal_(self.cls_score.weight, std=0.01)
        nn.init.zeros_(self.cls_score.bias)

    def pool5(self, crops: Tensor) -> Tensor:
        """``[R, 3, S, S]`` -> ``[R, C, P, P]`` (max pooling, as VGG16's and AlexNet's pool5)."""
        return F.adaptive_max_pool2d(self.body(crops), self.pooled_size)

    def features(self, crops: Tensor, layers: tuple[str, ...]) -> dict[str, Tensor]:
        """The requested layers (any of ``pool5``, ``fc6``, ``fc7``, ``logits``) of each crop.

        Returns ``{layer: [R, D_layer]}``; the network runs only as far as needed.
        """
        for layer in layers:
            if layer not in (*LAYERS, "logits"):
                raise ValueError(f"unknown feature layer {layer!r}; choose from {', '.join(LAYERS)}")
            if layer == "fc6" and self._split is None:
                raise ValueError("this backbone's head has no fc6 (no Linear layer); use pool5 or fc7")
        out: dict[str, Tensor] = {}
        pooled = self.pool5(crops)
        if "pool5" in layers:
            # (R, C, P, P) -> (R, C*P*P): the order the head's Flatten uses
            out["pool5"] = pooled.flatten(1)
        if not {"fc6", "fc7", "logits"} & set(layers):
            return out
        if self._split is not None:
            fc6 = self._split[0](pooled)
            if "fc6" in layers:
                out["fc6"] = fc6
            fc7 = self._split[1](fc6)
        else:
            fc7 = self.box_head(pooled)
        if "fc7" in layers:
            out["fc7"] = fc7
        if "logits" in layers:
            out["logits"] = self.cls_score(fc7)
        return out

    def forward(self, crops: Tensor) -> Tensor:
        """``[R, 3, S, S]`` -> class logits ``[R, K+1]`` (the fine-tuning objective)."""
        return self.cls_score(self.box_head(self.pool5(crops)))
