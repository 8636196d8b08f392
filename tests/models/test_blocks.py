"""Building blocks: transposed-conv arithmetic, bilinear init, fusion, backbones."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from seglit.models.backbones import ResNetBackbone, VGG16Backbone
from seglit.models.blocks import (
    Fuse,
    SeparableConv2d,
    Upsample,
    align_to,
    bilinear_kernel,
    scaled_width,
    transposed_output_size,
)


@pytest.mark.parametrize(
    ("i", "s", "p", "k"), [(7, 2, 1, 4), (5, 2, 0, 3), (4, 32, 16, 64), (9, 3, 1, 5), (1, 1, 0, 1)]
)
def test_transposed_output_size(i: int, s: int, p: int, k: int) -> None:
    conv = torch.nn.ConvTranspose2d(1, 1, k, stride=s, padding=p)
    out = conv(torch.zeros(1, 1, i, i + 1))
    assert transposed_output_size(i, s, p, k) == (i - 1) * s - 2 * p + k
    assert out.shape[-2:] == (
        transposed_output_size(i, s, p, k),
        transposed_output_size(i + 1, s, p, k),
    )


@pytest.mark.parametrize("scale", [2, 3, 4, 8])
def test_bilinear_init_reproduces_bilinear_interpolation(scale: int) -> None:
    up = Upsample(3, 3, scale, "transposed", bilinear_init=True)
    x = torch.randn(2, 3, 9, 11)
    ref = F.interpolate(x, scale_factor=scale, mode="bilinear", align_corners=False)
    out = up(x, ref.shape[-2:])
    assert out.shape == ref.shape
    # identical away from the border (interpolate clamps at the border, the conv zero-pads)
    b = scale
    torch.testing.assert_close(out[..., b:-b, b:-b], ref[..., b:-b, b:-b], atol=1e-5, rtol=0)
    assert up.conv.bias is None


def test_bilinear_kernel_is_per_channel() -> None:
    w = bilinear_kernel(4, 4)
    assert w.shape == (4, 4, 4, 4)
    assert w[0, 1].abs().sum() == 0
    torch.testing.assert_close(w[2, 2].sum(), torch.tensor(4.0))  # stride**2: each input spread


@pytest.mark.parametrize("mode", ["transposed", "bilinear", "nearest_conv", "bilinear_conv"])
@pytest.mark.parametrize("size", [(10, 12), (9, 13)])
def test_upsample_reaches_target_size(mode: str, size: tuple[int, int]) -> None:
    up = Upsample(6, 3, 2, mode)
    assert up(torch.randn(1, 6, 5, 6), size).shape == (1, 3, *size)


def test_align_to_crops_and_pads_bottom_right() -> None:
    x = torch.arange(12.0).view(1, 1, 3, 4)
    assert torch.equal(align_to(x, (2, 3)), x[..., :2, :3])
    padded = align_to(x, (4, 5))
    assert torch.equal(padded[..., :3, :4], x) and padded[..., 3, :].abs().sum() == 0


def test_concat_fusion_starts_as_sum() -> None:
    a, b = torch.randn(2, 5, 4, 4), torch.randn(2, 5, 4, 4)
    torch.testing.assert_close(Fuse(5, "concat")(a, b), Fuse(5, "sum")(a, b))
    assert sum(p.numel() for p in Fuse(5, "sum").parameters()) == 0


def test_separable_conv_params() -> None:
    conv = SeparableConv2d(32, 64, dilation=2)
    n_conv = sum(m.weight.numel() for m in conv if isinstance(m, torch.nn.Conv2d))
    assert n_conv == 9 * 32 + 32 * 64
    assert conv(torch.randn(1, 32, 9, 9)).shape == (1, 64, 9, 9)


def test_separable_conv_without_depthwise_bn_is_smps_form() -> None:
    conv = SeparableConv2d(32, 64, dilation=2, depthwise_bn=False)
    kinds = [type(m).__name__ for m in conv]
    assert kinds == ["Conv2d", "Conv2d", "BatchNorm2d", "ReLU"]
    assert conv[0].groups == 32 and conv[0].dilation == (2, 2)
    assert conv(torch.randn(1, 32, 9, 9)).shape == (1, 64, 9, 9)


@pytest.mark.parametrize("name", ["resnet18", "resnet50"])
@pytest.mark.parametrize(("os_", "dil3", "dil4"), [(32, 1, 1), (16, 1, 2), (8, 2, 4)])
def test_resnet_output_stride_by_dilation(name: str, os_: int, dil3: int, dil4: int) -> None:
    net = ResNetBackbone(name, output_stride=os_, width=4)
    feats = net(torch.randn(1, 3, 64, 64))
    assert feats["out"].shape[-1] == 64 // os_
    assert feats["stride4"].shape[-1] == 16
    assert "stride2" not in feats  # the stem only on request
    assert {k: v.shape[1] for k, v in feats.items()} == net.channels
    assert set(net.strides) == set(feats)
    with_stem = ResNetBackbone(name, output_stride=os_, width=4, stem_feature=True)
    feats = with_stem(torch.randn(1, 3, 64, 64))
    assert feats["stride2"].shape[-1] == 32  # the stem, before the max pool
    assert {k: v.shape[1] for k, v in feats.items()} == with_stem.channels
    assert set(with_stem.strides) == set(feats)
    last_conv = "conv2" if name == "resnet50" else "conv1"
    assert getattr(net.layer3[-1], last_conv).dilation == (dil3, dil3)
    assert getattr(net.layer4[-1], last_conv).dilation == (dil4, dil4)


def test_resnet_multi_grid() -> None:
    net = ResNetBackbone("resnet50", output_stride=16, multi_grid=(1, 2, 4), width=4)
    assert [b.conv2.dilation[0] for b in net.layer4] == [2, 4, 8]


def test_state_dicts_match_torchvision() -> None:
    import torchvision

    with torch.device("meta"):  # shapes only: no time spent initialising 138M parameters
        _check_state_dicts(torchvision)


def _check_state_dicts(torchvision) -> None:
    for name in ("resnet18", "resnet50"):
        tv = getattr(torchvision.models, name)().state_dict()
        own = ResNetBackbone(name).state_dict()
        assert set(own) == {k for k in tv if not k.startswith("fc.")}
        assert all(own[k].shape == tv[k].shape for k in own)
    tv = torchvision.models.vgg16().state_dict()
    own = VGG16Backbone(fc=True).state_dict()
    assert {k for k in own if k.startswith("features.")} == {
        k for k in tv if k.startswith("features.")
    }
    assert own["fc6.weight"].numel() == tv["classifier.0.weight"].numel()


@pytest.mark.parametrize(
    ("channels", "backbone_width", "expected"),
    [(256, None, 256), (256, 64, 256), (256, 4, 16), (512, 8, 64), (48, 1, 1), (16, 2, 1)],
)
def test_scaled_width_follows_the_backbone(channels, backbone_width, expected):
    assert scaled_width(channels, backbone_width) == expected
