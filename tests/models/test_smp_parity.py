"""seglit's smp twins: same parameters, same logits with smp's weights.

* ``ResNetUNet`` is smp's ``Unet`` with a ResNet encoder.
* ``DeepLabV3Plus(decoder_layout="smp", atrous_rates=(12, 24, 36), multi_grid=(1,))`` is
  smp's ``DeepLabV3Plus`` up to ``align_corners`` of its two fixed bilinear resizes.
"""

from __future__ import annotations

import os

import pytest
import torch

from seglit.models import DeepLabV3Plus, ResNetUNet

os.environ.setdefault("HF_HUB_OFFLINE", "1")
smp = pytest.importorskip("segmentation_models_pytorch")

# smp state-dict prefix -> seglit prefix; everything after the prefix is identical
PREFIXES = {"encoder.": "backbone.", "decoder.blocks.": "decoder.", "segmentation_head.0.": "head."}


def smp_unet(backbone: str, num_classes: int) -> torch.nn.Module:
    return smp.Unet(
        encoder_name=backbone,
        encoder_weights=None,
        encoder_depth=5,
        decoder_channels=(256, 128, 64, 32, 16),
        decoder_use_norm="batchnorm",
        decoder_attention_type=None,
        classes=num_classes,
    )


def to_seglit_key(key: str) -> str:
    for old, new in PREFIXES.items():
        if key.startswith(old):
            return new + key[len(old) :]
    raise AssertionError(f"unexpected smp state-dict key {key!r}")


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("backbone", ["resnet18", "resnet34", "resnet50"])
def test_same_parameter_count_as_smp(backbone: str) -> None:
    with torch.device("meta"):
        assert _params(ResNetUNet(21, backbone)) == _params(smp_unet(backbone, 21))


def randomise_batchnorm(model: torch.nn.Module) -> None:
    """Non-trivial BN statistics and affine parameters, so eval mode really uses them."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)


def assert_same_logits(model: torch.nn.Module, reference: torch.nn.Module, size) -> None:
    x = torch.randn(1, 3, *size)
    with torch.no_grad():
        expected = reference.eval()(x)
        got = model.eval()(x)
    assert got.shape == expected.shape == (1, 3, *size)
    torch.testing.assert_close(got, expected)


@pytest.mark.parametrize("size", [(64, 64), (70, 90)])
@pytest.mark.parametrize("backbone", ["resnet18", "resnet34"])
def test_smp_weights_give_same_logits(backbone: str, size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    reference = smp_unet(backbone, 3)
    randomise_batchnorm(reference)
    model = ResNetUNet(3, backbone)
    ours = model.state_dict()
    theirs = reference.state_dict()
    # one-to-one, in order, same shapes: the two networks have the same layers
    assert [to_seglit_key(k) for k in theirs] == list(ours)
    assert [v.shape for v in theirs.values()] == [v.shape for v in ours.values()]
    model.load_state_dict({to_seglit_key(k): v for k, v in theirs.items()})
    assert_same_logits(model, reference, size)


def smp_deeplabv3plus(backbone: str, num_classes: int) -> torch.nn.Module:
    return smp.DeepLabV3Plus(encoder_name=backbone, encoder_weights=None, classes=num_classes)


def seglit_smp_deeplabv3plus(
    backbone: str, num_classes: int, align_corners: bool = False
) -> DeepLabV3Plus:
    return DeepLabV3Plus(
        num_classes,
        backbone,
        decoder_layout="smp",
        atrous_rates=(12, 24, 36),
        multi_grid=(1,),
        align_corners=align_corners,
    )


@pytest.mark.parametrize("backbone", ["resnet18", "resnet50", "resnet101"])
def test_deeplabv3plus_smp_layout_has_smps_parameter_count(backbone: str) -> None:
    with torch.device("meta"):
        twin = seglit_smp_deeplabv3plus(backbone, 21)
        paper = DeepLabV3Plus(21, backbone)
        reference = smp_deeplabv3plus(backbone, 21)
    assert _params(twin) == _params(reference)
    # the paper layout: BN after each depthwise conv, two refinement convs, none after ASPP
    assert _params(paper) != _params(reference)


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("size", [(64, 64), (96, 128)])
def test_deeplabv3plus_smp_layout_gives_smps_logits(
    size: tuple[int, int], align_corners: bool
) -> None:
    """At output stride 16, smp's default. smp resizes with ``align_corners=True``: seglit's
    default (False, as torchvision and mmseg) matches smp with its two resizes switched to
    False, and ``align_corners=True`` matches smp as it is."""
    torch.manual_seed(0)
    reference = smp_deeplabv3plus("resnet18", 3)
    randomise_batchnorm(reference)
    reference.decoder.up.align_corners = align_corners
    reference.segmentation_head[1].align_corners = align_corners
    model = seglit_smp_deeplabv3plus("resnet18", 3, align_corners=align_corners)
    ours, theirs = model.state_dict(), reference.state_dict()
    # same layers in the same order: smp's weights load by position
    assert [v.shape for v in theirs.values()] == [v.shape for v in ours.values()]
    model.load_state_dict(dict(zip(ours, theirs.values())))
    assert_same_logits(model, reference, size)


def test_stem_feature_is_the_first_skip() -> None:
    model = ResNetUNet(2, "resnet18", backbone_width=4)
    assert model.decoder[3].conv1[0].in_channels == 64 + 4  # decoder 64 + stem width 4
    assert model.decoder[4].conv1[0].in_channels == 32  # last stage: no skip
