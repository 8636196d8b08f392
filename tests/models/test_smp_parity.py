"""``ResNetUNet`` is smp's ``Unet`` with a ResNet encoder: same parameters, same logits."""

from __future__ import annotations

import os

import pytest
import torch

from seglit.models import ResNetUNet

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


@pytest.mark.parametrize("size", [(64, 64), (70, 90)])
@pytest.mark.parametrize("backbone", ["resnet18", "resnet34"])
def test_smp_weights_give_same_logits(backbone: str, size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    reference = smp_unet(backbone, 3)
    with torch.no_grad():  # non-trivial BN statistics, so eval mode really uses them
        for m in reference.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.5, 0.5)
    model = ResNetUNet(3, backbone)
    ours = model.state_dict()
    theirs = reference.state_dict()
    # one-to-one, in order, same shapes: the two networks have the same layers
    assert [to_seglit_key(k) for k in theirs] == list(ours)
    assert [v.shape for v in theirs.values()] == [v.shape for v in ours.values()]
    model.load_state_dict({to_seglit_key(k): v for k, v in theirs.items()})
    x = torch.randn(1, 3, *size)
    with torch.no_grad():
        expected = reference.eval()(x)
        got = model.eval()(x)
    assert got.shape == (1, 3, *size)
    torch.testing.assert_close(got, expected)


def test_stem_feature_is_the_first_skip() -> None:
    model = ResNetUNet(2, "resnet18", backbone_width=4)
    assert model.decoder[3].conv1[0].in_channels == 64 + 4  # decoder 64 + stem width 4
    assert model.decoder[4].conv1[0].in_channels == 32  # last stage: no skip
