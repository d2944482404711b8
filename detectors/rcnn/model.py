"""R-CNN behind the harness's common detector interface (R-CNN section 2).

Test path (section 2.2): proposals -> dilate + warp every proposal to S x S ->
the whole CNN on each crop -> per-class linear SVM scores (or the fine-tuned
softmax, the appendix B ablation) -> class-specific box regression on pool5
(section 3.4) -> per-class NMS at IoU 0.3. ``model(images, targets)`` returns
the fine-tuning loss in training mode, and in eval mode one
``{"boxes", "labels", "scores"}`` per image, timed as the stages ``proposals``,
``warp``, ``cnn``, ``classifier`` and ``nms``.

R-CNN is trained in stages, not end to end: the loss of this module is only the
first stage, fine-tuning the (K+1)-way softmax on warped regions (section 2.3),
either on crops sampled across the whole training set and warped by the data
loader (targets with ``region_labels``; R-CNN's sampling) or on regions sampled
from the images of the batch (Fast R-CNN's hierarchical sampling, the ablation);
the SVMs and box regressors are fitted afterwards on cached features and
installed with :meth:`RCNN.set_svms` / :meth:`RCNN.set_box_regressors`
(``harness.train.rcnn`` drives the stages). They are buffers, so they travel
with the state dict.

Shape shorthand: B = images, R = regions, S = crop size, K = classes,
D = classifier feature size, Dp = pool5 size.
"""
from __future__ import annotations

from collections.abc import Iterator

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from detectors.box_ops import BoxCoder, Matcher, match_to_gt, sample_balanced
from detectors.proposals import ImageBatch, PrecomputedProposals
from detectors.roi_heads import select_detections
from detectors.two_stage import StageTimer, no_timer

from .network import RegionCNN
from .warp import normalize_batch, region_rois, warp_rois

CLASSIFIERS = ("svm", "softmax")


class RCNN(nn.Module):
    """Regions with CNN features.

    Args:
        network: the region CNN (backbone body + FC head + K+1 softmax).
        num_classes: K.
        mean, std: input normalisation of the backbone.
        crop_size: S (224 in the paper for VGG16).
        padding: context pixels around each box at the S scale (16 in the paper).
        feature_layer: ``pool5``, ``fc6`` or ``fc7``: the SVMs' input.
        classifier: ``svm`` (the paper) or ``softmax`` (the fine-tuned network's own output).
        box_regression: apply the class-specific box regressors at test time.
        batch_size: crops per CNN forward (feature extraction and test).
        train_proposals, test_proposals: proposals kept per image (the paper: about 2000).
        finetune_batch, fg_fraction, fg_iou: fine-tuning mini-batch (128 regions, 32
            foreground with IoU >= 0.5, the rest background with IoU in [0, 0.5)).
        score_thresh, nms_thresh, max_detections: post-processing (NMS 0.3).
    """

    def __init__(
        self,
        *,
        network: RegionCNN,
        num_classes: int,
        mean: tuple[float, float, float],
        std: tuple[float, float, float],
        crop_size: int = 224,
        padding: int = 16,
        feature_layer: str = "fc7",
        classifier: str = "svm",
        box_regression: bool = True,
        batch_size: int = 256,
        train_proposals: int = 2000,
        test_proposals: int = 2000,
        finetune_batch: int = 128,
        fg_fraction: float = 0.25,
        fg_iou: float = 0.5,
        score_thresh: float = -1.0,
        nms_thresh: float = 0.3,
        max_detections: int = 100,
    ) -> None:
        super().__init__()
        if feature_layer not in network.dims:
            raise ValueError(f"feature layer {feature_layer!r} is not available; choose from {', '.join(network.dims)}")
        if classifier not in CLASSIFIERS:
            raise ValueError(f"classifier must be one of {', '.join(CLASSIFIERS)}, got {classifier!r}")
        self.network, self.num_classes = network, num_classes
        self.register_buffer("mean", torch.tensor(mean), persistent=False)
        self.register_buffer("std", torch.tensor(std), persistent=False)
        self.crop_size, self.padding, self.batch_size = crop_size, padding, batch_size
        self.feature_layer, self.classifier, self.box_regression = feature_layer, classifier, box_regression
        self.proposal_source = PrecomputedProposals(top_n=test_proposals)
        self.train_proposal_source = PrecomputedProposals(top_n=train_proposals)
        # fine-tuning labels: foreground IoU >= 0.5, background [0, 0.5) (section 2.3)
        self.finetune_matcher = Matcher(fg_iou, fg_iou, low_min=0.0)
        self.finetune_batch, self.fg_fraction = finetune_batch, fg_fraction
        self.box_coder = BoxCoder()
        self.score_thresh, self.nms_thresh, self.max_detections = score_thresh, nms_thresh, max_detections
        dim, pool5 = network.dims[feature_layer], network.dims["pool5"]
        # SVMs: score = scale * x @ W.T + b on the feature layer
        self.register_buffer("svm_weight", torch.zeros(num_classes, dim))
        self.register_buffer("svm_bias", torch.zeros(num_classes))
        self.register_buffer("svm_feature_scale", torch.ones(()))
        self.register_buffer("svm_trained", torch.zeros((), dtype=torch.bool))
        # box regressors: deltas[k] = pool5 @ W[k] + b[k] (the scale is folded into W)
        self.register_buffer("bbox_weight", torch.zeros(num_classes, pool5 if box_regression else 0, 4))
        self.register_buffer("bbox_bias", torch.zeros(num_classes, 4))
        self.register_buffer("bbox_trained", torch.zeros((), dtype=torch.bool))

    # ------------------------------------------------------------------ regions
    def normalize(self, images: list[Tensor]) -> tuple[Tensor, list[tuple[int, int]]]:
        """``[3, H_i, W_i]`` images in [0, 1] -> normalised ``[B, 3, Hp, Wp]`` and the sizes."""
        return normalize_batch(images, self.mean, self.std)

    def proposals(
        self, batch: Tensor, sizes: list[tuple[int, int]], targets: list[dict] | None, *, training: bool | None = None
    ) -> list[Tensor]:
        """The top-N proposals of each image, clipped, tiny ones dropped.

        ``training`` picks the training N (fine-tuning, the feature cache) or the
        test N; None follows the module's mode.
        """
        training = self.training if training is None else training
        source = self.train_proposal_source if training else self.proposal_source
        try:
            boxes, _ = source(ImageBatch(batch, sizes), batch, targets)
        except ValueError:
            raise ValueError(
                "R-CNN needs region proposals: each target must carry 'proposals' "
                "(the run attaches selective search; see proposals.* in `harness config`)"
            ) from None
        return boxes

    @torch.no_grad()
    def propose(
        self, images: list[Tensor], targets: list[dict] | None = None, *, top_n: int | None = None
    ) -> list[Tensor]:
        """Proposals alone (the test-time top-N; at most ``top_n`` when given), for proposal-recall curves."""
        batch, sizes = self.normalize(images)
        return [boxes[:top_n] for boxes in self.proposals(batch, sizes, targets)]

    def region_features(
        self, batch: Tensor, boxes: list[Tensor], layers: tuple[str, ...], *, timer: StageTimer = no_timer
    ) -> Iterator[tuple[int, int, dict[str, Tensor]]]:
        """Warp and run the CNN on all regions, ``batch_size`` crops at a time.

        Args:
            batch: normalised ``[B, 3, Hp, Wp]``; boxes: B tensors ``[R_i, 4]``.
            layers: any of ``pool5``, ``fc6``, ``fc7``, ``logits``.
        Yields:
            ``(start, end, {layer: [end - start, D_layer]})`` over the regions of all
            images in order (image 0's first).
        """
        with timer("warp"):
            rois = region_rois(boxes, crop_size=self.crop_size, padding=self.padding, like=batch)
        for start in range(0, rois.shape[0], self.batch_size):
            end = min(start + self.batch_size, rois.shape[0])
            with timer("warp"):
                crops = warp_rois(batch, rois[start:end], crop_size=self.crop_size)
            with timer("cnn"):
                feats = self.network.features(crops, layers)
            yield start, end, feats

    # ------------------------------------------------------------------ training (fine-tuning)
    def training_regions(self, target: dict, proposals: Tensor) -> Tensor:
        """Ground-truth boxes first, then the proposals: the regions R-CNN trains on."""
        return torch.cat((target["boxes"].to(proposals), proposals))

    def label_regions(
        self, batch: Tensor, sizes: list[tuple[int, int]], targets: list[dict]
    ) -> tuple[list[Tensor], list[Tensor]]:
        """Every training region of each image and its fine-tuning label (section 2.3).

        Regions are the gt boxes then the top training proposals
        (:meth:`training_regions`); a label is the class of the gt box it overlaps
        with IoU >= ``fg_iou`` (foreground), else 0 (background, IoU in [0, 0.5)).
        Both fine-tuning samplers use this: per batch of images
        (:meth:`finetune_regions`) and over the whole training set
        (``harness.train.rcnn_sampling``).

        Returns:
            B tensors ``[R_i, 4]`` (pixels of their image) and B ``int64 [R_i]``.
        """
        props = self.proposals(batch, sizes, targets, training=True)
        regions = [self.training_regions(t, p) for t, p in zip(targets, props)]
        labels = [
            match_to_gt(self.finetune_matcher, r, t["boxes"].to(r), t["labels"].to(r.device))[0]
            for r, t in zip(regions, targets)
        ]
        return regions, labels

    def finetune_regions(
        self, batch: Tensor, sizes: list[tuple[int, int]], targets: list[dict]
    ) -> tuple[Tensor, Tensor]:
        """One fine-tuning mini-batch from the images of one batch: dilated rois ``[R, 5]`` and labels ``int64 [R]``.

        The mini-batch pools the regions (gt boxes and proposals) of the batch's
        images: ``finetune_batch`` of them, at most ``fg_fraction`` foreground (32
        of 128). This is Fast R-CNN's hierarchical sampling (the
        ``rcnn.finetune_sampling=image`` ablation); R-CNN's own sampling draws the
        regions from the whole training set, arriving pre-warped (:meth:`forward`).
        """
        regions, per_image = self.label_regions(batch, sizes, targets)
        labels = torch.cat(per_image)
        pos, neg = sample_balanced(labels, batch_size=self.finetune_batch, positive_fraction=self.fg_fraction)
        keep = torch.cat((pos, neg))
        rois = region_rois(regions, crop_size=self.crop_size, padding=self.padding, like=batch)
        return rois[keep], labels[keep]

    def finetune_losses(self, images: list[Tensor], targets: list[dict]) -> dict[str, Tensor]:
        """``{"loss_cls"}``: cross-entropy of the (K+1)-way softmax on warped regions (section 2.3).

        When the targets carry ``region_labels``, each image is already a stack of
        warped, normalised crops ``[r_i, 3, S, S]`` (the training-set sampler) and
        the loss is taken on them as they are; otherwise the regions are sampled
        from these images (:meth:`finetune_regions`).
        """
        if targets and all("region_labels" in t for t in targets):
            crops = torch.cat(images)
            labels = torch.cat([t["region_labels"] for t in targets]).to(crops.device)
            return {"loss_cls": F.cross_entropy(self.network(crops), labels)}
        batch, sizes = self.normalize(images)
        rois, labels = self.finetune_regions(batch, sizes, targets)
        logits = self.network(warp_rois(batch, rois, crop_size=self.crop_size))
        return {"loss_cls": F.cross_entropy(logits, labels)}

    # ------------------------------------------------------------------ installing the later stages
    def set_svms(self, weight: Tensor, bias: Tensor, feature_scale: float) -> None:
        """Install the SVMs: ``weight [K, D]``, ``bias [K]``, trained on features times ``feature_scale``."""
        self.svm_weight.copy_(weight)
        self.svm_bias.copy_(bias)
        self.svm_feature_scale.fill_(feature_scale)
        self.svm_trained.fill_(True)

    def set_box_regressors(self, weight: Tensor, bias: Tensor) -> None:
        """Install the regressors: ``weight [K, Dp, 4]``, ``bias [K, 4]`` on raw pool5 features."""
        if not self.box_regression:
            raise ValueError("this R-CNN was built without box regression")
        self.bbox_weight.copy_(weight)
        self.bbox_bias.copy_(bias)
        self.bbox_trained.fill_(True)

    def test_layers(self) -> tuple[str, ...]:
        """The network outputs the test path needs."""
        layers = ("logits",) if self.classifier == "softmax" else (self.feature_layer,)
        return layers + (("pool5",) if self.box_regression else ())

    # ------------------------------------------------------------------ forward
    def forward(
        self, images: list[Tensor], targets: list[dict] | None = None, *, timer: StageTimer = no_timer
    ) -> dict[str, Tensor] | list[dict[str, Tensor]]:
        """Training: ``{"loss_cls"}`` of fine-tuning. Evaluation: detections per image.

        Args:
            images: B float32 ``[3, H_i, W_i]`` in [0, 1].
            targets: training targets (with ``proposals``); in evaluation, dicts
                carrying only ``proposals``.
            timer: ``timer(stage)`` context manager around each test stage.
        """
        if self.training:
            if targets is None:
                raise ValueError("targets are required in training")
            return self.finetune_losses(images, targets)
        if self.classifier == "svm" and not bool(self.svm_trained):
            raise RuntimeError("R-CNN's SVMs are not trained yet: train with harness.train.rcnn.train_rcnn")
        with timer("warp"):
            batch, sizes = self.normalize(images)
        with timer("proposals"):
            proposals = self.proposals(batch, sizes, targets)
        regress = self.box_regression and bool(self.bbox_trained)
        score_parts = [batch.new_zeros((0, self.num_classes))]
        delta_parts = [batch.new_zeros((0, self.num_classes, 4))]
        for _, _, feats in self.region_features(batch, proposals, self.test_layers(), timer=timer):
            with timer("classifier"):
                score_parts.append(self.class_scores(feats))
                if regress:
                    # (R, Dp) x (K, Dp, 4) -> (R, K, 4)
                    delta_parts.append(torch.einsum("rd,kdt->rkt", feats["pool5"], self.bbox_weight) + self.bbox_bias)
        with timer("nms"):
            deltas = torch.cat(delta_parts) if regress else None
            return self._detections(proposals, sizes, torch.cat(score_parts), deltas)

    def class_scores(self, feats: dict[str, Tensor]) -> Tensor:
        """``[R, K]`` scores: SVM margins, or softmax probabilities without the background column."""
        if self.classifier == "softmax":
            return F.softmax(feats["logits"], dim=1)[:, 1:]
        return (feats[self.feature_layer] * self.svm_feature_scale) @ self.svm_weight.T + self.svm_bias

    def _detections(
        self, proposals: list[Tensor], sizes: list[tuple[int, int]], scores: Tensor, deltas: Tensor | None
    ) -> list[dict[str, Tensor]]:
        """Decode class-specific boxes (``deltas [R, K, 4]``, or None: the proposals), then per-class NMS."""
        flat = torch.cat(proposals) if proposals else scores.new_zeros((0, 4))
        if deltas is not None:
            # (R, K, 4) -> (R, 4K) -> decoded (R, 4K) -> (R, K, 4)
            boxes = self.box_coder.decode(flat, deltas.reshape(flat.shape[0], -1)).reshape(-1, self.num_classes, 4)
        else:  # no box regression: every class keeps the proposal itself
            boxes = flat[:, None, :].expand(-1, self.num_classes, 4)
        results, start = [], 0
        for props, size in zip(proposals, sizes):
            end = start + props.shape[0]
            results.append(select_detections(
                boxes[start:end], scores[start:end], size, score_thresh=self.score_thresh,
                nms_thresh=self.nms_thresh, max_detections=self.max_detections,
            ))
            start = end
        return results
