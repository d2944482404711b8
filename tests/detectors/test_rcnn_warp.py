"""R-CNN's crop-and-warp: context padding geometry, image borders, and the layer split."""
import pytest
import torch
from torch import nn

from detectors.backbones import build_backbone
from detectors.rcnn.network import RegionCNN, layer_dims, split_box_head
from detectors.rcnn.warp import context_boxes, normalize_batch, warp_regions


def gradient_image(height: int, width: int) -> torch.Tensor:
    """``[1, 3, H, W]``: channel 0 = column index + 1, channel 1 = row index + 1, channel 2 = 1.

    Bilinear interpolation of a linear function is exact, so every sampled value
    says where it was sampled; the +1 keeps in-image values away from the 0 fill.
    """
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float32), torch.arange(width, dtype=torch.float32),
                            indexing="ij")
    return torch.stack((xs + 1, ys + 1, torch.ones(height, width)))[None]


def expected_axis(lo: float, hi: float, size: int, padding: int) -> torch.Tensor:
    """Value sampled at each output pixel's centre along one axis, for box side ``[lo, hi]``.

    The box occupies output pixels ``padding .. size - padding - 1``: output pixel ``j``
    centre ``j + 0.5`` maps to ``lo + (j + 0.5 - padding) * (hi - lo) / (size - 2 padding)``;
    pixel ``k`` holds ``k + 1`` at its centre ``k + 0.5``, hence the ``+ 0.5``.
    """
    j = torch.arange(size, dtype=torch.float32)
    return lo + (j + 0.5 - padding) * (hi - lo) / (size - 2 * padding) + 0.5


def test_context_padding_puts_the_box_on_the_central_pixels():
    image = gradient_image(60, 80)
    box = torch.tensor([[12.0, 9.0, 44.0, 25.0]])  # 32 x 16, warped anisotropically
    crop = warp_regions(image, [box], crop_size=40, padding=4)[0]
    assert crop.shape == (3, 40, 40)
    torch.testing.assert_close(crop[0, 0], expected_axis(12.0, 44.0, 40, 4), atol=1e-4, rtol=0)
    torch.testing.assert_close(crop[1, :, 0], expected_axis(9.0, 25.0, 40, 4), atol=1e-4, rtol=0)
    # the box's left edge x1 = 12 falls exactly between output pixels p - 1 and p
    assert crop[0, 0, 3] < 12.5 < crop[0, 0, 4]
    # the dilation is p * w / (S - 2p) on each side (R-CNN appendix A)
    torch.testing.assert_close(context_boxes(box, crop_size=40, padding=4), torch.tensor([[8.0, 7.0, 48.0, 27.0]]))


def test_no_padding_warps_the_box_alone():
    image = gradient_image(50, 50)
    crop = warp_regions(image, [torch.tensor([[5.0, 5.0, 21.0, 37.0]])], crop_size=16, padding=0)[0]
    torch.testing.assert_close(crop[0, 0], expected_axis(5.0, 21.0, 16, 0), atol=1e-4, rtol=0)
    torch.testing.assert_close(crop[1, :, 0], expected_axis(5.0, 37.0, 16, 0), atol=1e-4, rtol=0)


@pytest.mark.parametrize("corner", ["top_left", "bottom_right"])
def test_context_outside_the_image_is_the_mean_colour(corner):
    """Outside the image the crop is 0: the image mean after normalisation (R-CNN's fill)."""
    h, w = 48, 64
    image = gradient_image(h, w)
    box = torch.tensor([[0.0, 0.0, 16.0, 16.0]]) if corner == "top_left" else torch.tensor([[w - 16.0, h - 16.0, w, h]])
    crop = warp_regions(image, [box], crop_size=32, padding=8)[0]  # dilated by 8 px on each side
    outer = slice(0, 7) if corner == "top_left" else slice(25, 32)  # samples more than 1 px outside
    assert (crop[:, outer, :] == 0).all() and (crop[:, :, outer] == 0).all()
    inner = slice(8, 24)  # the box itself: exact in-image values
    x_lo = 0.0 if corner == "top_left" else w - 16.0
    torch.testing.assert_close(crop[0, 16, inner], expected_axis(x_lo, x_lo + 16, 32, 8)[inner], atol=1e-4, rtol=0)
    torch.testing.assert_close(crop[2, inner, inner], torch.ones(16, 16), atol=1e-5, rtol=0)


def test_regions_of_several_images_keep_their_order():
    a, b = gradient_image(40, 40), gradient_image(40, 40) + 100
    batch = torch.cat((a, b))
    boxes = [torch.tensor([[4.0, 4.0, 20.0, 20.0]]), torch.tensor([[4.0, 4.0, 20.0, 20.0], [10, 10, 30, 30]])]
    crops = warp_regions(batch, boxes, crop_size=16, padding=2)
    assert crops.shape == (3, 3, 16, 16)
    assert crops[0, 2].max() < 2 and crops[1, 2].min() > 100 and crops[2, 2].min() > 100
    assert warp_regions(batch, [torch.zeros(0, 4), torch.zeros(0, 4)], crop_size=16, padding=2).shape == (0, 3, 16, 16)


def test_normalize_batch_pads_with_the_mean():
    mean, std = torch.tensor([0.5, 0.4, 0.3]), torch.tensor([0.2, 0.2, 0.2])
    images = [mean.view(3, 1, 1).expand(3, 10, 12).clone(), torch.ones(3, 14, 8)]
    batch, sizes = normalize_batch(images, mean, std)
    assert batch.shape == (2, 3, 14, 12) and sizes == [(10, 12), (14, 8)]
    assert (batch[0] == 0).all() and (batch[1, :, :, 8:] == 0).all()


def test_head_split_gives_fc6_and_fc7():
    head = nn.Sequential(nn.Flatten(), nn.Linear(12, 8), nn.ReLU(), nn.Dropout(), nn.Linear(8, 6), nn.ReLU())
    to_fc6, to_fc7 = split_box_head(head)
    assert len(to_fc6) == 4  # Flatten, Linear, ReLU, Dropout: VGG16's fc6 block
    head.eval()
    x = torch.randn(5, 3, 2, 2)
    torch.testing.assert_close(to_fc7(to_fc6(x)), head(x))
    assert layer_dims(out_channels=3, pooled_size=2, box_head=head, representation_size=6) == {
        "pool5": 12, "fc7": 6, "fc6": 8}


def test_region_cnn_layers_on_the_tiny_backbone():
    parts = build_backbone("tiny")
    net = RegionCNN(body=parts.body, box_head=parts.box_head, out_channels=160, representation_size=256,
                    pooled_size=7, num_classes=3).eval()
    with torch.no_grad():
        crops = torch.randn(4, 3, 112, 112)  # 112 = 16 x 7: pool5 is the body output itself
        out = net.features(crops, ("pool5", "fc6", "fc7", "logits"))
        assert {k: v.shape[1] for k, v in out.items()} == {"pool5": 7840, "fc6": 256, "fc7": 256, "logits": 4}
        torch.testing.assert_close(out["logits"], net(crops))
        torch.testing.assert_close(out["fc7"], parts.box_head(net.pool5(crops)))
    assert not any(k.startswith("_split") for k in net.state_dict())  # the split view adds no weights


def test_resnet_head_has_no_fc6():
    parts = build_backbone("resnet18")
    assert split_box_head(parts.box_head) is None
    net = RegionCNN(body=parts.body, box_head=parts.box_head, out_channels=256, representation_size=512,
                    pooled_size=14, num_classes=2)
    assert "fc6" not in net.dims
    with pytest.raises(ValueError, match="no fc6"):
        net.features(torch.randn(1, 3, 64, 64), ("fc6",))


def test_warp_samples_where_roi_align_does_inside_the_image():
    """The grid_sample warp takes roi_align's (sampling_ratio=1, aligned=True) sample points."""
    from torchvision.ops import roi_align

    from detectors.rcnn.warp import warp_rois

    g = torch.Generator().manual_seed(0)
    batch = torch.randn(2, 3, 40, 56, generator=g)
    xy = torch.rand(12, 2, generator=g) * 20 + 2
    wh = torch.rand(12, 2, generator=g) * 14 + 4
    rois = torch.cat((torch.tensor([0.0] * 5 + [1.0] * 7)[:, None], xy, xy + wh), dim=1)
    expected = roi_align(batch, rois, (9, 9), spatial_scale=1.0, sampling_ratio=1, aligned=True)
    torch.testing.assert_close(warp_rois(batch, rois, crop_size=9), expected, atol=1e-4, rtol=0)
    mixed = torch.randperm(12, generator=g)  # the images' regions interleaved: the by-index path
    torch.testing.assert_close(warp_rois(batch, rois[mixed], crop_size=9), expected[mixed], atol=1e-4, rtol=0)
