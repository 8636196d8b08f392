"""Paper configurations: layer structure and parameter counts against the references.

Reference parameter counts are written out layer by layer with the reference's own layer
names (caffe prototxts for FCN and DeepLab v1/v2, mmseg's module names for its heads and
U-Net), so a reader can check each term against the cited file. Full-size networks are
built on the ``meta`` device (shapes only); numerical checks use tiny widths, except the
Xception-65 parity with timm (one forward of a small image).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from seglit.models import (
    DeepLabV1,
    DeepLabV2,
    DeepLabV3,
    DeepLabV3Plus,
    FCN8s,
    FCN16s,
    FCN32s,
    Hypercolumn,
    UNet,
)
from seglit.models.backbones import XceptionBackbone
from seglit.models.blocks import bilinear_kernel
from seglit.models.fcn import SKIP_SCALES
from seglit.models.heads import FCNHead
from seglit.models.unet import UpsampleNorm


def params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def conv(c_in: int, c_out: int, k: int = 1, bias: bool = True) -> int:
    """Weights (+ biases) of a k x k convolution."""
    return c_in * c_out * k * k + (c_out if bias else 0)


def dwconv(c: int, k: int = 3) -> int:
    """A depthwise k x k convolution without bias."""
    return c * k * k


def bn(c: int) -> int:
    """BatchNorm's affine parameters (weight and bias)."""
    return 2 * c


# VGG16's 13 convs (caffe names conv1_1 ... conv5_3; 3x3, with bias)
VGG16_CONVS = {
    "conv1_1": conv(3, 64, 3),
    "conv1_2": conv(64, 64, 3),
    "conv2_1": conv(64, 128, 3),
    "conv2_2": conv(128, 128, 3),
    "conv3_1": conv(128, 256, 3),
    "conv3_2": conv(256, 256, 3),
    "conv3_3": conv(256, 256, 3),
    "conv4_1": conv(256, 512, 3),
    "conv4_2": conv(512, 512, 3),
    "conv4_3": conv(512, 512, 3),
    "conv5_1": conv(512, 512, 3),
    "conv5_2": conv(512, 512, 3),
    "conv5_3": conv(512, 512, 3),
}


# ----------------------------------------------------------------------------------- FCN

# fcn.berkeleyvision.org voc-fcn{32s,16s,8s,8s-atonce}/net.py, 21 classes. Deconvolutions
# have no bias (bias_term: false) and one 21x21 kernel pair per class pair.
FCN_COMMON = {
    **VGG16_CONVS,
    "fc6": conv(512, 4096, 7),
    "fc7": conv(4096, 4096, 1),
    "score_fr": conv(4096, 21, 1),
}
FCN_REFERENCE = {
    "fcn32s": {**FCN_COMMON, "upscore": 21 * 21 * 64 * 64},
    "fcn16s": {
        **FCN_COMMON,
        "upscore2": 21 * 21 * 4 * 4,
        "score_pool4": conv(512, 21, 1),
        "upscore16": 21 * 21 * 32 * 32,
    },
    "fcn8s": {
        **FCN_COMMON,
        "upscore2": 21 * 21 * 4 * 4,
        "score_pool4": conv(512, 21, 1),
        "upscore_pool4": 21 * 21 * 4 * 4,
        "score_pool3": conv(256, 21, 1),
        "upscore8": 21 * 21 * 16 * 16,
    },
}
# voc-fcn8s-atonce adds two caffe Scale layers with a fixed (lr_mult 0) per-channel factor:
# 512 + 256 parameters that seglit applies as the constants 0.01 / 0.0001.
ATONCE_SCALES = {"scale_pool4": 512, "scale_pool3": 256}


@pytest.mark.parametrize(
    ("cls", "name"), [(FCN32s, "fcn32s"), (FCN16s, "fcn16s"), (FCN8s, "fcn8s")]
)
def test_fcn_vgg16_has_the_reference_nets_parameters(cls: type, name: str) -> None:
    with torch.device("meta"):
        model = cls(21, backbone="vgg16")
    assert params(model) == sum(FCN_REFERENCE[name].values())
    if name == "fcn8s":
        assert params(model) == 134_489_759  # the paper's "134M"
        with torch.device("meta"):
            atonce = FCN8s(21, skip_scale=True, learn_upsampling=False)
        reference = sum(FCN_REFERENCE[name].values()) + sum(ATONCE_SCALES.values())
        assert params(atonce) == reference - sum(ATONCE_SCALES.values())


def test_fcn8s_atonce_structure() -> None:
    """voc-fcn8s-atonce: skip scales, fixed bilinear deconvs, zero score layers, element
    dropout after fc6/fc7, deconv kernels 4/4/16 at strides 2/2/8."""
    torch.manual_seed(0)
    model = FCN8s(21, backbone_width=8, skip_scale=True, learn_upsampling=False)
    for name, k, s in (("up_pool4", 4, 2), ("up_pool3", 4, 2), ("up_final", 16, 8)):
        deconv = getattr(model, name).conv
        assert isinstance(deconv, nn.ConvTranspose2d) and deconv.bias is None
        assert deconv.kernel_size == (k, k) and deconv.stride == (s, s)
        assert not deconv.weight.requires_grad
        torch.testing.assert_close(deconv.weight, bilinear_kernel(21, k))
    for layer in (model.classifier[0], model.score_pool4, model.score_pool3):
        assert layer.weight.abs().sum() == 0 and layer.bias.abs().sum() == 0
    for act in (model.backbone.fc_act, model.backbone.fc_act2):
        assert type(act[1]) is nn.Dropout and act[1].p == 0.5
    assert SKIP_SCALES == {"pool4": 0.01, "pool3": 0.0001}

    # the score layers see pool4 * 0.01 and pool3 * 0.0001
    seen: dict[str, torch.Tensor] = {}

    def record(name: str):
        def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
            seen[name] = inputs[0]

        return hook

    model.score_pool4.register_forward_hook(record("pool4"))
    model.score_pool3.register_forward_hook(record("pool3"))
    x = torch.randn(1, 3, 64, 64)
    model.eval()
    with torch.no_grad():
        model(x)
        feats = model.backbone(x)
    torch.testing.assert_close(seen["pool4"], feats["stride16"] * 0.01)
    torch.testing.assert_close(seen["pool3"], feats["stride8"] * 0.0001)

    # the optimizer never sees the fixed deconvolutions
    from seglit.module import SegmentationModule

    optimizer = SegmentationModule(model, num_classes=21).build_optimizer()
    optimized = {id(p) for group in optimizer.param_groups for p in group["params"]}
    assert id(model.up_final.conv.weight) not in optimized
    assert id(model.score_pool3.weight) in optimized


def test_fcn_defaults_learn_the_upsampling_and_can_drop_channels() -> None:
    model = FCN8s(21, backbone_width=4, fc_dropout="channel")
    assert model.up_final.conv.weight.requires_grad  # the paper's original experiments
    assert not model.skip_scale
    assert type(model.backbone.fc_act[1]) is nn.Dropout2d
    assert FCN8s(21, backbone_width=4).classifier[0].weight.abs().sum() == 0


# ---------------------------------------------------------------------------- DeepLab v1/v2

# DeepLab-LargeFOV (v1) and DeepLab-v2 VGG16 ASPP-L train.prototxt, 21 classes
LARGEFOV_REFERENCE = {
    **VGG16_CONVS,
    "fc6": conv(512, 1024, 3),  # dilation 12
    "fc7": conv(1024, 1024, 1),
    "fc8_voc12": conv(1024, 21, 1),
}
ASPP_L_REFERENCE = dict(VGG16_CONVS)
for _i in range(1, 5):  # rates 6, 12, 18, 24
    ASPP_L_REFERENCE[f"fc6_{_i}"] = conv(512, 1024, 3)
    ASPP_L_REFERENCE[f"fc7_{_i}"] = conv(1024, 1024, 1)
    ASPP_L_REFERENCE[f"fc8_voc12_{_i}"] = conv(1024, 21, 1)


def _vgg_deeplab_structure(model: nn.Module) -> None:
    pools = [m for m in model.backbone.features if isinstance(m, nn.MaxPool2d)]
    assert [p.kernel_size for p in pools] == [3] * 5
    assert [p.stride for p in pools] == [2, 2, 2, 1, 1]
    convs = [m for m in model.backbone.features if isinstance(m, nn.Conv2d)]
    assert [c.dilation[0] for c in convs] == [1] * 10 + [2] * 3  # conv5 at rate 2
    assert model.output_stride == 8


def test_deeplab_v1_largefov_is_the_papers() -> None:
    with torch.device("meta"):
        model = DeepLabV1(21)
    assert params(model) == sum(LARGEFOV_REFERENCE.values()) == 20_505_429  # paper: 20.5M
    _vgg_deeplab_structure(model)
    fc6, fc7, fc8 = (m for m in model.classifier if isinstance(m, nn.Conv2d))
    assert fc6.kernel_size == (3, 3) and fc6.dilation == (12, 12) and fc6.out_channels == 1024
    assert fc7.kernel_size == (1, 1) and fc8.out_channels == 21
    assert [type(m) for m in model.classifier if "Dropout" in type(m).__name__] == [nn.Dropout] * 2


def test_deeplab_v2_aspp_l_vgg16_is_the_papers() -> None:
    with torch.device("meta"):
        model = DeepLabV2(21, backbone="vgg16")
    assert params(model) == sum(ASPP_L_REFERENCE.values()) == 37_877_652
    _vgg_deeplab_structure(model)
    assert [branch[0].dilation[0] for branch in model.aspp] == [6, 12, 18, 24]
    assert all(type(branch[2]) is nn.Dropout for branch in model.aspp)


def test_deeplab_v2_msc_fuses_scales_by_max_and_supervises_each() -> None:
    torch.manual_seed(0)
    model = DeepLabV2(3, backbone="resnet18", backbone_width=4, msc_scales=(1.0, 0.75, 0.5))
    x = torch.randn(2, 3, 64, 72)
    model.train()
    out = model(x)
    assert set(out) == {"out", "aux"} and len(out["aux"]) == 3
    assert all(a.shape == (2, 3, 64, 72) for a in [out["out"], *out["aux"]])
    model.eval()
    with torch.no_grad():
        fused = model(x)
        # by hand: each scale's logits, resized to the full-scale logits, max-fused
        logits = []
        for s in (1.0, 0.75, 0.5):
            xs = (
                x
                if s == 1
                else F.interpolate(x, size=(round(64 * s), round(72 * s)), mode="bilinear")
            )
            logits.append(model._logits(model.backbone(xs)))
        size = logits[0].shape[-2:]
        assert logits[1].shape[-2] < size[0] and logits[2].shape[-2] < logits[1].shape[-2]
        resized = [logits[0]] + [F.interpolate(t, size=size, mode="bilinear") for t in logits[1:]]
        expected = F.interpolate(torch.stack(resized).amax(0), size=(64, 72), mode="bilinear")
    torch.testing.assert_close(fused, expected)
    assert isinstance(fused, torch.Tensor)
    # v1 takes the same knob
    v1 = DeepLabV1(3, backbone_width=4, msc_scales=(1.0, 0.5)).train()
    assert len(v1(torch.randn(2, 3, 40, 40))["aux"]) == 2


# ------------------------------------------------------------------------------ DeepLab v3


def _resnet101_features() -> int:
    import torchvision

    with torch.device("meta"):
        tv = torchvision.models.resnet101()
    return params(tv) - params(tv.fc)


def v3_paper_head(in_ch: int = 2048, ch: int = 256, classes: int = 21) -> dict[str, int]:
    """DeepLab v3's head as the paper / TF DeepLab's model.py names it."""
    return {
        "aspp0 (1x1)": conv(in_ch, ch, 1, bias=False) + bn(ch),
        "aspp1 (3x3, r6)": conv(in_ch, ch, 3, bias=False) + bn(ch),
        "aspp2 (3x3, r12)": conv(in_ch, ch, 3, bias=False) + bn(ch),
        "aspp3 (3x3, r18)": conv(in_ch, ch, 3, bias=False) + bn(ch),
        "image_pooling (1x1)": conv(in_ch, ch, 1, bias=False) + bn(ch),
        "concat_projection (1x1)": conv(5 * ch, ch, 1, bias=False) + bn(ch),
        "logits (1x1)": conv(ch, classes, 1),
    }


def test_deeplab_v3_heads() -> None:
    import torchvision

    with torch.device("meta"):
        paper = DeepLabV3(21)
        tv_layout = DeepLabV3(21, head="torchvision", output_stride=8, multi_grid=None)
        tv = torchvision.models.segmentation.deeplabv3_resnet101(
            weights=None, weights_backbone=None, num_classes=21, aux_loss=False
        )
    assert params(paper) == _resnet101_features() + sum(v3_paper_head().values())
    assert params(tv_layout) == params(tv)
    # torchvision's extra 3x3 conv + BN
    assert params(tv_layout) - params(paper) == conv(256, 256, 3, bias=False) + bn(256) == 590_336
    aspp, logits = paper.classifier
    assert aspp.project[0].kernel_size == (1, 1) and logits.kernel_size == (1, 1)
    assert [type(m) for m in aspp.project] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU, nn.Dropout]
    assert aspp.project[3].p == 0.1  # TF DeepLab's keep_prob 0.9
    assert len(paper.classifier) == 2  # no conv between the projection and the logits


@pytest.mark.parametrize(
    ("os_", "rates", "layer3", "layer4"),
    [
        (16, [6, 12, 18], [(2, 1)] + [(1, 1)] * 22, [(1, 2), (1, 4), (1, 8)]),
        (8, [12, 24, 36], [(1, 1)] + [(1, 2)] * 22, [(1, 4), (1, 8), (1, 16)]),
    ],
)
def test_deeplab_v3_output_stride_rebuilds_dilations_and_rates(os_, rates, layer3, layer4) -> None:
    with torch.device("meta"):
        model = DeepLabV3(21, output_stride=os_)
    units = lambda layer: [(b.conv2.stride[0], b.conv2.dilation[0]) for b in layer]  # noqa: E731
    assert units(model.backbone.layer3) == layer3
    assert units(model.backbone.layer4) == layer4  # multi-grid (1, 2, 4) x the stage rate
    aspp = model.classifier[0]
    assert [b[0].dilation[0] for b in aspp.convs[1:4]] == rates
    assert model.output_stride == os_


# ------------------------------------------------------------------- mmseg's DeepLab heads

MMSEG_C = 512  # decode_head channels in deeplabv3plus_r50-d8.py / deeplabv3_r50-d8.py
MMSEG_CLASSES = 19


def mmseg_aux_head() -> dict[str, int]:
    """auxiliary_head = FCNHead(in 1024, channels 256, num_convs 1, concat_input False)."""
    return {
        "convs.0.conv": conv(1024, 256, 3, bias=False),
        "convs.0.bn": bn(256),
        "conv_seg": conv(256, MMSEG_CLASSES, 1),
    }


def mmseg_pool_and_1x1_branches(cin: int, c: int) -> dict[str, int]:
    """The image-pooling branch and the rate-1 branch that both mmseg ASPP heads share."""
    return {
        "image_pool.1.conv": conv(cin, c, 1, bias=False),
        "image_pool.1.bn": bn(c),
        "aspp_modules.0.conv": conv(cin, c, 1, bias=False),
        "aspp_modules.0.bn": bn(c),
    }


def mmseg_sep_aspp_head() -> dict[str, int]:
    """decode_head = DepthwiseSeparableASPPHead(in 2048, channels 512, dilations
    (1, 12, 24, 36), c1_in_channels 256, c1_channels 48), sep_aspp_head.py + aspp_head.py."""
    c, cin = MMSEG_C, 2048
    head = mmseg_pool_and_1x1_branches(cin, c)
    for i in (1, 2, 3):
        head[f"aspp_modules.{i}.depthwise_conv.conv"] = dwconv(cin)
        head[f"aspp_modules.{i}.depthwise_conv.bn"] = bn(cin)
        head[f"aspp_modules.{i}.pointwise_conv.conv"] = conv(cin, c, 1, bias=False)
        head[f"aspp_modules.{i}.pointwise_conv.bn"] = bn(c)
    head.update(
        {
            "bottleneck.conv (3x3)": conv(5 * c, c, 3, bias=False),
            "bottleneck.bn": bn(c),
            "c1_bottleneck.conv": conv(256, 48, 1, bias=False),
            "c1_bottleneck.bn": bn(48),
            "sep_bottleneck.0.depthwise_conv.conv": dwconv(c + 48),
            "sep_bottleneck.0.depthwise_conv.bn": bn(c + 48),
            "sep_bottleneck.0.pointwise_conv.conv": conv(c + 48, c, 1, bias=False),
            "sep_bottleneck.0.pointwise_conv.bn": bn(c),
            "sep_bottleneck.1.depthwise_conv.conv": dwconv(c),
            "sep_bottleneck.1.depthwise_conv.bn": bn(c),
            "sep_bottleneck.1.pointwise_conv.conv": conv(c, c, 1, bias=False),
            "sep_bottleneck.1.pointwise_conv.bn": bn(c),
            "conv_seg": conv(c, MMSEG_CLASSES, 1),
        }
    )
    return head


def mmseg_aspp_head() -> dict[str, int]:
    """decode_head = ASPPHead(in 2048, channels 512, dilations (1, 12, 24, 36))."""
    c, cin = MMSEG_C, 2048
    head = mmseg_pool_and_1x1_branches(cin, c)
    for i in (1, 2, 3):
        head[f"aspp_modules.{i}.conv"] = conv(cin, c, 3, bias=False)
        head[f"aspp_modules.{i}.bn"] = bn(c)
    head["bottleneck.conv (3x3)"] = conv(5 * c, c, 3, bias=False)
    head["bottleneck.bn"] = bn(c)
    head["conv_seg"] = conv(c, MMSEG_CLASSES, 1)
    return head


def _mmseg_v3plus() -> DeepLabV3Plus:
    return DeepLabV3Plus(
        MMSEG_CLASSES,
        backbone="resnet50",
        output_stride=8,
        atrous_rates=(12, 24, 36),
        multi_grid=None,
        aspp_channels=MMSEG_C,
        decoder_layout="mmseg",
        aux=True,
    )


def v1c_stem_extra() -> int:
    """seglit's mmseg layouts use torchvision's ResNet-50 (7x7 stem); mmseg's ResNetV1c-50
    has a 3-conv stem (3->32->32->64, 3x3, BN): the parameters it has more."""
    v1c_stem = conv(3, 32, 3, False) + bn(32) + conv(32, 32, 3, False) + bn(32)
    v1c_stem += conv(32, 64, 3, False) + bn(64)
    return v1c_stem - (conv(3, 64, 7, False) + bn(64))


def test_deeplab_v3plus_mmseg_layout_has_mmsegs_head() -> None:
    with torch.device("meta"):
        model = _mmseg_v3plus()
        paper = DeepLabV3Plus(
            MMSEG_CLASSES, "resnet50", output_stride=8, aspp_channels=MMSEG_C, aux=True
        )
    head = params(model) - params(model.backbone) - params(model.aux_classifier)
    assert head == sum(mmseg_sep_aspp_head().values()) == 17_697_923
    assert params(model.aux_classifier) == sum(mmseg_aux_head().values())
    assert type(model.aux_classifier[3]) is nn.Dropout2d  # mmseg's FCNHead
    assert type(paper.aux_classifier[3]) is nn.Dropout  # torchvision's
    # the 3x3 bottleneck after the ASPP concat: 10,485,760 weights more than a 1x1
    assert params(model) - params(paper) == conv(5 * 512, 512, 3, False) - conv(
        5 * 512, 512, 1, False
    )
    assert model.aspp.project[0].kernel_size == (3, 3)
    assert [type(m) for m in model.aspp.project] == [nn.Conv2d, nn.BatchNorm2d, nn.ReLU]
    assert type(model.dropout) is nn.Dropout2d and model.dropout.p == 0.1
    assert [b[0].groups for b in model.aspp.convs[1:4]] == [2048] * 3  # depthwise, BN after
    assert all(type(b[1]) is nn.BatchNorm2d for b in model.aspp.convs[1:4])
    assert len(model.decoder) == 2 and model.low_level[0].out_channels == 48
    assert v1c_stem_extra() == 19_232
    whole = params(model) + v1c_stem_extra()  # mmseg's whole network
    assert whole == 43_589_878 and "43,589,878" in DOCS


def test_deeplab_v3_mmseg_head_is_mmsegs_aspp_head() -> None:
    with torch.device("meta"):
        model = DeepLabV3(
            MMSEG_CLASSES, "resnet50", output_stride=8, multi_grid=None, head="mmseg",
            aspp_channels=MMSEG_C, aux=True,
        )  # fmt: skip
    head = params(model) - params(model.backbone) - params(model.aux_classifier)
    assert head == sum(mmseg_aspp_head().values())
    assert params(model.aux_classifier) == sum(mmseg_aux_head().values())
    assert type(model.aux_classifier[3]) is nn.Dropout2d  # mmseg's FCNHead
    assert type(model.classifier[1]) is nn.Dropout2d
    whole = params(model) + v1c_stem_extra()  # mmseg's whole network
    assert whole == 68_113_030 and "68,113,030" in DOCS


# ------------------------------------------------------------------------------ U-Net


def mmseg_unet_s5_d16() -> dict[str, int]:
    """mmseg UNet(base_channels 64, num_stages 5, InterpConv) + FCNHead(64 -> 64) +
    auxiliary FCNHead(128 -> 64), 19 classes (fcn_unet_s5-d16.py)."""
    w = [64 * 2**i for i in range(5)]
    ref: dict[str, int] = {}
    c_in = 3
    for i, c in enumerate(w):  # encoder.i: BasicConvBlock, two ConvModule 3x3 + BN
        ref[f"encoder.{i}.convs.0"] = conv(c_in, c, 3, bias=False) + bn(c)
        ref[f"encoder.{i}.convs.1"] = conv(c, c, 3, bias=False) + bn(c)
        c_in = c
    for i in range(1, 5):  # decoder.{i-1}: UpConvBlock(in w[i], skip w[i-1])
        up, skip = w[i], w[i - 1]
        ref[f"decoder.{i - 1}.upsample.interp_upsample.1 (1x1)"] = conv(up, skip, 1, False) + bn(
            skip
        )
        ref[f"decoder.{i - 1}.conv_block.convs.0"] = conv(2 * skip, skip, 3, False) + bn(skip)
        ref[f"decoder.{i - 1}.conv_block.convs.1"] = conv(skip, skip, 3, False) + bn(skip)
    ref["decode_head.convs.0"] = conv(64, 64, 3, bias=False) + bn(64)
    ref["decode_head.conv_seg"] = conv(64, 19, 1)
    ref["auxiliary_head.convs.0"] = conv(128, 64, 3, bias=False) + bn(64)
    ref["auxiliary_head.conv_seg"] = conv(64, 19, 1)
    return ref


def test_unet_mmseg_configuration_has_mmsegs_layers() -> None:
    kwargs = {"upsample": "bilinear", "upsample_norm": True, "head": "fcn", "aux": True}
    with torch.device("meta"):
        model = UNet(19, base_width=64, depth=5, **kwargs)
        paper = UNet(2, base_width=64, depth=5, batch_norm=False)
    assert params(model) == sum(mmseg_unet_s5_d16().values()) == 29_062_886
    assert params(paper) == 31_031_810  # the paper's U-Net (no BN): ~31M
    for up in model.ups:
        assert isinstance(up, UpsampleNorm) and up.up is None
        assert up.conv.kernel_size == (1, 1) and up.conv.bias is None
    for head in (model.head, model.aux_classifier):
        assert isinstance(head, FCNHead) and type(head[3]) is nn.Dropout2d
    assert model.head[0].out_channels == 64 and model.aux_classifier[0].in_channels == 128
    # interpolate first, then the 1x1 conv, BN, ReLU (mmseg's InterpConv order)
    up = UpsampleNorm(4, 2, "bilinear").eval()
    x = torch.randn(1, 4, 5, 6)
    expected = F.relu(up.bn(up.conv(F.interpolate(x, size=(10, 12), mode="bilinear"))))
    torch.testing.assert_close(up(x, (10, 12)), expected)


def test_unet_aux_reads_the_stride2_decoder_level() -> None:
    torch.manual_seed(0)
    for depth in (2, 3, 5):
        model = UNet(3, base_width=4, depth=depth, head="fcn", aux=True).train()
        out = model(torch.randn(2, 3, 35, 37))
        assert out["aux"].shape == out["out"].shape == (2, 3, 35, 37)
        assert isinstance(model.eval()(torch.randn(1, 3, 35, 37)), torch.Tensor)


# ---------------------------------------------------------------------------- Xception-65


def _timm_xception65(**kwargs) -> nn.Module:
    timm = pytest.importorskip("timm")
    return timm.create_model("xception65", pretrained=False, num_classes=0, **kwargs)


def test_xception65_matches_timm_layer_for_layer() -> None:
    with torch.device("meta"):
        ours = XceptionBackbone(output_stride=32)
        reference = _timm_xception65()
    theirs = {k: v.shape for k, v in reference.state_dict().items()}
    assert {k: v.shape for k, v in ours.state_dict().items()} == theirs  # same keys, shapes
    assert params(ours) == params(reference) == 37_867_312
    blocks = ours.blocks
    assert len(blocks) == 21  # entry 3, middle 16, exit 2
    assert [b.stack.conv3.conv_pw.out_channels for b in blocks[:3]] == [128, 256, 728]
    assert [b.stack.conv3.conv_pw.out_channels for b in blocks[19:]] == [1024, 2048]
    assert blocks[20].shortcut is None and not blocks[20].skip


def _rates_and_strides(net: XceptionBackbone) -> list[tuple[int, int]]:
    return [
        (b.stack.conv3.conv_dw.stride[0], b.stack.conv1.conv_dw.dilation[0]) for b in net.blocks
    ]


@pytest.mark.parametrize(
    ("os_", "entry3", "middle", "exit1", "exit2"),
    [(32, (2, 1), 1, (2, 1), 1), (16, (2, 1), 1, (1, 1), 2), (8, (1, 1), 2, (1, 2), 4)],
)
def test_xception65_output_stride_by_dilation(os_, entry3, middle, exit1, exit2) -> None:
    """TF DeepLab's rule: the stride that would pass the output stride becomes dilation for
    everything after it (OS 16: exit flow; OS 8: middle and exit flows)."""
    with torch.device("meta"):
        net = XceptionBackbone(output_stride=os_)
    units = _rates_and_strides(net)
    assert units[:2] == [(2, 1), (2, 1)]
    assert units[2] == entry3
    assert set(units[3:19]) == {(1, middle)}
    assert units[19] == exit1 and units[20] == (1, exit2)
    assert net.strides == {"stride4": 4, "stride8": 8, "stride16": min(16, os_), "out": os_}
    assert net.channels == {"stride4": 256, "stride8": 728, "stride16": 1024, "out": 2048}
    with torch.device("meta"):
        mg = XceptionBackbone(output_stride=16, multi_grid=(1, 2, 4))
    last = mg.blocks[20].stack
    assert [last[i].conv_dw.dilation[0] for i in range(3)] == [2, 4, 8]


def test_xception65_computes_what_timm_computes() -> None:
    """timm's random weights loaded into seglit's Xception-65 give the same features."""
    with torch.device("meta"):
        reference = _timm_xception65(output_stride=8)
        ours = XceptionBackbone(output_stride=8)
    reference.to_empty(device="cpu")
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in reference.named_parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.1 + (name.endswith("bn.weight")))
        for name, b in reference.named_buffers():
            if name.endswith("running_var"):
                b.copy_(torch.rand(b.shape, generator=gen) + 0.5)
            elif name.endswith("running_mean"):
                b.copy_(torch.randn(b.shape, generator=gen) * 0.1)
    ours.to_empty(device="cpu")
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(1, 3, 33, 33, generator=gen)
    with torch.no_grad():
        feats = ours.eval()(x)
        taps = reference.eval().forward_intermediates(x, intermediates_only=True)
    for key, tap in zip(("stride4", "stride8", "stride16", "out"), taps[1:]):
        torch.testing.assert_close(feats[key], tap, rtol=1e-4, atol=1e-4)


def test_deeplab_v3plus_xception65_reads_the_stride4_entry_flow_feature() -> None:
    with torch.device("meta"):
        model = DeepLabV3Plus(21, backbone="xception65")
        v3 = DeepLabV3(21, backbone="xception65")
    assert model.low_level[0].in_channels == 256 and model.output_stride == 16
    assert model.aspp.convs[1][0].in_channels == 2048
    assert params(model.backbone) == params(v3.backbone) == 37_867_312
    torch.manual_seed(0)
    tiny = DeepLabV3Plus(3, backbone="xception65", backbone_width=4).eval()
    with torch.no_grad():
        feats = tiny.backbone(torch.randn(1, 3, 64, 64))
        assert feats["stride4"].shape[-1] == 16 and feats["out"].shape[-1] == 4


# --------------------------------------------------------------------------- hypercolumns


def test_hypercolumn_concatenates_the_selected_stages() -> None:
    with torch.device("meta"):
        model = Hypercolumn(21)  # VGG16 pool2, pool4, fc7
    assert model.stages == ("stride4", "stride16", "out")
    assert model.classifier.in_channels == 128 + 512 + 4096
    assert params(model) == params(model.backbone) + conv(128 + 512 + 4096, 21, 1)
    with pytest.raises(ValueError, match="stages.*'stride2'"):
        Hypercolumn(21, backbone="resnet18", backbone_width=4, stages=("stride32",))


def test_hypercolumn_linear_classifier_is_the_papers_sum_of_per_layer_scores() -> None:
    """Upsample-concatenate-classify equals classify each layer, upsample, sum (linear)."""
    from seglit.models.hypercolumn import _resize

    torch.manual_seed(0)
    model = Hypercolumn(
        4, backbone="resnet18", backbone_width=4, stages=("stride4", "stride8", "out")
    )
    model.eval()
    x = torch.randn(1, 3, 61, 67)
    with torch.no_grad():
        out = model(x)
        feats = model.backbone(x)
        w, b = model.classifier.weight, model.classifier.bias
        base = feats["stride4"].shape[-2:]
        total, start = b.view(1, -1, 1, 1), 0
        for key in model.stages:
            c = model.backbone.channels[key]
            score = F.conv2d(feats[key], w[:, start : start + c])
            total = total + _resize(score, model.factors[key], base)
            start += c
        expected = _resize(total, 4, (61, 67))
    torch.testing.assert_close(out, expected, rtol=1e-4, atol=1e-5)


# ------------------------------------------------------- the numbers in docs/models.md

DOCUMENTED = [
    # (docs/models.md "Paper configurations" row, builder, seglit's count)
    ("FCN-32s VGG16", lambda: FCN32s(21), 136_152_917),
    ("FCN-16s VGG16", lambda: FCN16s(21), 134_815_994),
    ("FCN-8s VGG16", lambda: FCN8s(21), 134_489_759),
    ("FCN-8s at-once", lambda: FCN8s(21, skip_scale=True, learn_upsampling=False), 134_489_759),
    ("U-Net paper", lambda: UNet(2, batch_norm=False), 31_031_810),
    ("DeepLab v1 LargeFOV", lambda: DeepLabV1(21), 20_505_429),
    ("DeepLab v2 ASPP-L VGG16", lambda: DeepLabV2(21, backbone="vgg16"), 37_877_652),
    ("DeepLab v2 ASPP-L R101", lambda: DeepLabV2(21), 44_048_532),
    ("DeepLab v3 R101", lambda: DeepLabV3(21), 58_040_661),
    ("DeepLab v3 R101 OS8", lambda: DeepLabV3(21, output_stride=8), 58_040_661),
    (
        "torchvision deeplabv3_resnet101",
        lambda: DeepLabV3(21, head="torchvision", output_stride=8, multi_grid=None),
        58_630_997,
    ),
    (
        "torchvision deeplabv3_resnet50",
        lambda: DeepLabV3(21, "resnet50", output_stride=8, multi_grid=None, head="torchvision"),
        39_638_869,
    ),
    (
        "torchvision fcn_resnet50",
        lambda: FCN32s(21, "resnet50", output_stride=8, head="fcn", upsample="bilinear"),
        32_957_013,
    ),
    (
        "mmseg DeepLabV3 R50-D8",
        lambda: DeepLabV3(
            19,
            "resnet50",
            output_stride=8,
            multi_grid=None,
            head="mmseg",
            aspp_channels=512,
            aux=True,
        ),  # fmt: skip
        68_093_798,
    ),
    ("mmseg DeepLabV3+ R50-D8", _mmseg_v3plus, 43_570_646),
    ("DeepLab v3+ R101", lambda: DeepLabV3Plus(21), 45_688_261),
    ("DeepLab v3+ Xception-65", lambda: DeepLabV3Plus(21, backbone="xception65"), 41_055_413),
    ("Hypercolumn VGG16", lambda: Hypercolumn(21), 134_360_021),
]


@pytest.mark.parametrize(("row", "build", "count"), DOCUMENTED, ids=[r for r, _, _ in DOCUMENTED])
def test_documented_parameter_counts(row: str, build, count: int) -> None:
    with torch.device("meta"):
        model = build()
    assert params(model) == count, row
    assert f"{count:,}" in DOCS, f"docs/models.md does not state {count:,} ({row})"


def test_documented_reference_counts() -> None:
    import torchvision

    seg = torchvision.models.segmentation
    with torch.device("meta"):
        tv = {
            "deeplabv3_resnet50": seg.deeplabv3_resnet50(weights=None, weights_backbone=None),
            "fcn_resnet50": seg.fcn_resnet50(weights=None, weights_backbone=None),
        }
    assert params(tv["deeplabv3_resnet50"]) == 39_638_869
    assert params(tv["fcn_resnet50"]) == 32_957_013
    atonce = sum(FCN_REFERENCE["fcn8s"].values()) + sum(ATONCE_SCALES.values())
    assert atonce == 134_490_527 and f"{atonce:,}" in DOCS


DOCS = (Path(__file__).parents[2] / "docs" / "models.md").read_text()
