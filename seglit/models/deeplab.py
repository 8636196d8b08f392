"""DeepLab v1 (LargeFOV), v2 (ASPP, sum of branch logits, multi-scale input fusion), v3 (ASPP
+ image pooling, concat) and v3+ (v3 encoder + low-level decoder, atrous depthwise-separable
convolutions), on VGG16, ResNets or aligned Xception-65.

Every model scores at the backbone's output stride and upsamples the logits to the input
size (``upsample``; bilinear by default, as in the papers). CRF post-processing is not part
of the network (``model.inference.crf``, :mod:`seglit.crf`).

Geometry (``align_corners``): the backbones put coarse cell ``i`` at input pixel ``s * i``
(output stride ``s``). caffe's ``Interp`` (DeepLab v1/v2) and TF DeepLab (v3/v3+) resize
with corner alignment (``align_corners=True``, inputs of size ``s * k + 1`` such as 321 and
513), which keeps it there; PyTorch's default (``False``, seglit's default, mmseg's and
torchvision's convention) moves it: by ``(s - 1) / 2`` pixels (3.5 at OS 8) on inputs of
``s * k`` pixels, on ``s * k + 1`` inputs by up to that much towards the borders. With
``align_corners=True`` every bilinear resize of the network follows the papers: the logits
to the input, v3+'s decoder upsampling, the auxiliary head, and DeepLab v2's MSC (input
scaled to ``(H - 1) * scale + 1`` pixels, branches brought to the largest scale's grid
aligned, so the max fuses logits of the same place).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from seglit.models.backbones import dropout_layer
from seglit.models.blocks import SeparableConv2d, Upsample, conv_bn_relu, scaled_width
from seglit.models.deeplab_base import _check_rates, _DeepLabBase, _DeepLabV3Base, _v12_backbone
from seglit.models.heads import ASPP, DeepLabHead, V3Head
from seglit.models.knobs import (
    BackboneName,
    DeepLabV3BackboneName,
    DropoutKind,
    FusionMode,
    OutputStride,
    UpsampleMode,
    check_choice,
)
from seglit.models.registry import register_model

DecoderLayout = Literal["paper", "smp", "mmseg"]
"""DeepLab v3+ decoder layouts: TF DeepLab (the paper's), smp 0.6's, mmseg's
``DepthwiseSeparableASPPHead``."""
TINY_RESNET = {"backbone": "resnet18", "backbone_width": 4}


def _vgg_fc_branch(
    in_ch: int, fc_ch: int, num_classes: int, dilation: int, dropout: str = "element"
) -> nn.Sequential:
    """DeepLab VGG head: fc6 (3x3, dilated) - fc7 (1x1) - fc8 (1x1 to classes), ReLU and
    dropout 0.5 after fc6 and fc7 (element-wise as caffe's, or channel-wise)."""
    return nn.Sequential(
        nn.Conv2d(in_ch, fc_ch, 3, padding=dilation, dilation=dilation),
        nn.ReLU(inplace=True),
        dropout_layer(dropout),
        nn.Conv2d(fc_ch, fc_ch, 1),
        nn.ReLU(inplace=True),
        dropout_layer(dropout),
        nn.Conv2d(fc_ch, num_classes, 1),
    )


@register_model("deeplabv1", tiny={"backbone_width": 4})
class DeepLabV1(_DeepLabBase):
    """DeepLab v1 LargeFOV: VGG16 (3x3 pools, pool4/pool5 stride 1, conv5 dilation 2, output
    stride 8), fc6 = 3x3 conv with dilation 12 and 1024 channels, fc7 = 1x1 1024, fc8 = 1x1,
    ReLU + dropout 0.5 after fc6 and fc7 (DeepLab-LargeFOV's prototxt). 20,505,429
    parameters at 21 classes, the paper's 20.5M (``tests/models/test_paper_configs.py``).

    Args:
        num_classes: Number of classes.
        pretrained: ImageNet weights for the VGG16 convs (fc6/fc7 are new layers here; the
            paper subsamples VGG16's fc6/fc7).
        output_stride: 8 (the paper's), 16 or 32.
        fc6_dilation: Dilation of fc6 (12 = LargeFOV).
        fc_channels: Channels of fc6/fc7 (1024 = LargeFOV).
        fc_dropout: Dropout after fc6/fc7: ``element`` (caffe's, the paper's) or ``channel``.
        pool5a: A 3x3 stride-1 average pool (padding 1, the padding counted as caffe's
            ``AVE`` pooling does) between pool5 and fc6, as the released DeepLab-LargeFOV
            prototxt's ``pool5a``; no parameters.
        msc_scales: Multi-scale input fusion (DeepLab v2's MSC, see :class:`DeepLabV2`);
            ``None`` (the v1 paper's) runs one scale.
        upsample: How logits are brought to the input size (``bilinear`` = paper).
        aux: Auxiliary FCN head on the pool4 stage.
        backbone_width: Scale the backbone (and fc channels) down; ``None`` = standard.
        align_corners: Corner-aligned bilinear resizes, the paper's geometry (caffe's
            ``Interp`` / TF DeepLab: logit ``i`` at input pixel ``output_stride * i``; see
            the module docstring); ``False`` is PyTorch's default (mmseg, torchvision).
    """

    def __init__(
        self,
        num_classes: int,
        pretrained: bool = False,
        output_stride: OutputStride = 8,
        fc6_dilation: int = 12,
        fc_channels: int = 1024,
        fc_dropout: DropoutKind = "element",
        msc_scales: tuple[float, ...] | None = None,
        upsample: UpsampleMode = "bilinear",
        aux: bool = False,
        backbone_width: int | None = None,
        align_corners: bool = False,
        pool5a: bool = False,
    ) -> None:
        super().__init__(num_classes)
        _check_rates("fc6_dilation", [fc6_dilation])
        self.pool5a = nn.AvgPool2d(3, stride=1, padding=1) if pool5a else None
        self.backbone = _v12_backbone(
            "vgg16", output_stride, pretrained, backbone_width, fc_dropout
        )
        self.classifier = _vgg_fc_branch(
            self.backbone.channels["out"],
            scaled_width(fc_channels, backbone_width),
            num_classes,
            fc6_dilation,
            fc_dropout,
        )
        self._init_common(
            num_classes,
            upsample,
            aux,
            msc_scales=msc_scales,
            align_corners=align_corners,
        )

    def _logits(self, feats: dict[str, Tensor]) -> Tensor:
        x = feats["out"]
        return self.classifier(x if self.pool5a is None else self.pool5a(x))

    def classifier_modules(self) -> list[nn.Module]:
        """fc8, the layer caffe trains at lr x10 (``lr_mult: 10/20``)."""
        return [self.classifier[-1]]


@register_model("deeplabv2", tiny=TINY_RESNET)
class DeepLabV2(_DeepLabBase):
    """DeepLab v2: ASPP with one branch per rate, fused by **summing the branch logits**.

    ASPP-L: rates (6, 12, 18, 24); ASPP-S: (2, 4, 8, 12). With VGG16 each branch is
    fc6 (3x3, rate r, 1024) - fc7 (1x1, 1024) - fc8 (1x1), ReLU + dropout 0.5 after fc6 and
    fc7 (DeepLab-v2 VGG16 ASPP-L: 37,877,652 parameters at 21 classes); with a ResNet (or
    Xception-65) each branch is a single 3x3 conv with rate r straight to class scores (the
    paper's ResNet-101 variant).

    Multi-scale inputs (``msc_scales``, the paper's MSC, Sec. 3.1/4): the network runs on
    the input resized by each scale (the paper: 1, 0.75, 0.5), each scale's logits are
    resized (bilinear) to the largest scale's and fused by element-wise max. In training
    the output is ``{"out": fused, "aux": [logits of each scale]}``: the paper supervises
    the fused and every per-scale output with equal weight (``model.aux_weight: 1.0``).
    The caffe reference shrinks the labels to each output's size; seglit upsamples each
    output to the label instead.

    Args:
        num_classes: Number of classes.
        backbone: ``vgg16``, ``resnet18/34/50/101`` or ``xception65``.
        pretrained: ImageNet weights for the backbone.
        output_stride: 8 (the paper's), 16 or 32.
        atrous_rates: One ASPP branch per rate.
        fc_dropout: VGG16 branches' dropout after fc6/fc7: ``element`` (caffe's) or
            ``channel``; no effect on the ResNet / Xception branches (no dropout).
        msc_scales: Input scales for MSC, e.g. ``(1.0, 0.75, 0.5)``; ``None`` = one scale.
        upsample: How logits are brought to the input size.
        aux: Auxiliary FCN head on the stride-16 stage (not together with ``msc_scales``).
        backbone_width: Scale the backbone down; ``None`` = standard widths.
        align_corners: Corner-aligned bilinear resizes, the paper's geometry (caffe's
            ``Interp`` / TF DeepLab: logit ``i`` at input pixel ``output_stride * i``; see
            the module docstring); ``False`` is PyTorch's default (mmseg, torchvision).
    """

    def __init__(
        self,
        num_classes: int,
        backbone: BackboneName = "resnet101",
        pretrained: bool = False,
        output_stride: OutputStride = 8,
        atrous_rates: tuple[int, ...] = (6, 12, 18, 24),
        fc_dropout: DropoutKind = "element",
        msc_scales: tuple[float, ...] | None = None,
        upsample: UpsampleMode = "bilinear",
        aux: bool = False,
        backbone_width: int | None = None,
        align_corners: bool = False,
    ) -> None:
        super().__init__(num_classes)
        _check_rates("atrous_rates", atrous_rates)
        self.backbone = _v12_backbone(
            backbone, output_stride, pretrained, backbone_width, fc_dropout
        )
        in_ch = self.backbone.channels["out"]
        if backbone == "vgg16":
            fc_ch = scaled_width(1024, backbone_width)
            branches = [
                _vgg_fc_branch(in_ch, fc_ch, num_classes, r, fc_dropout) for r in atrous_rates
            ]
        else:
            branches = [
                nn.Conv2d(in_ch, num_classes, 3, padding=r, dilation=r) for r in atrous_rates
            ]
        self.aspp = nn.ModuleList(branches)
        self._init_common(
            num_classes,
            upsample,
            aux,
            msc_scales=msc_scales,
            align_corners=align_corners,
        )

    def _logits(self, feats: dict[str, Tensor]) -> Tensor:
        x = feats["out"]
        return torch.stack([branch(x) for branch in self.aspp]).sum(0)

    def classifier_modules(self) -> list[nn.Module]:
        """The layers caffe trains at lr x10: each branch's fc8 (VGG16), or the branch
        convs themselves (ResNet / Xception: each is the classifier, ``fc1_*``)."""
        return [b[-1] if isinstance(b, nn.Sequential) else b for b in self.aspp]


@register_model("deeplabv3", tiny=TINY_RESNET)
class DeepLabV3(_DeepLabV3Base):
    """DeepLab v3: dilated ResNet or aligned Xception-65 (output stride 8/16), multi-grid,
    ASPP with image pooling, branches **concatenated**, then the head (``head``).

    ``head="paper"`` (default) is the paper's: ASPP concat -> 1x1 projection (256, BN,
    ReLU) -> 1x1 logits, with TF DeepLab's dropout 0.1 between them. ``"torchvision"`` is
    torchvision's ``DeepLabHead`` (an extra 3x3 conv + BN + ReLU, dropout 0.5; 590,336
    parameters more at 256 channels), used by :func:`~seglit.models.from_torchvision`;
    ``"mmseg"`` is mmseg's ``ASPPHead`` (3x3 projection, ``Dropout2d(0.1)``).

    Output stride: the ASPP rates default to (6, 12, 18) at OS16 and are doubled at OS8, the
    backbone's dilations follow ``output_stride``; a network trained at OS16 is evaluated at
    OS8 (the paper's 78.51 on VOC val) by rebuilding it with ``output_stride=8`` and
    ``atrous_rates=None``: the parameters are the same, so its checkpoint loads strictly.

    Args:
        num_classes: Number of classes.
        backbone: ``resnet18/34/50/101`` or ``xception65``.
        pretrained: ImageNet weights for the backbone.
        output_stride: 8, 16 (the paper's training setting) or 32; 4 with
            ``backbone_stages=1``.
        atrous_rates: ASPP rates; ``None`` = (6, 12, 18) at OS16, doubled at OS8. A value
            pins the rates at every output stride.
        multi_grid: Unit rates of the last stage, e.g. (1, 2, 4); ``None`` = torchvision's
            dilation scheme (every unit the stage rate, the first one the previous rate).
        image_pooling: Add the image-level pooling branch to ASPP.
        separable: Atrous depthwise-separable 3x3 ASPP branches.
        head: ``paper``, ``torchvision`` or ``mmseg`` (see above).
        aspp_channels: ASPP width; ``None`` = 256 (scaled down with ``backbone_width``).
        upsample: How logits are brought to the input size.
        aux: Auxiliary FCN head on ``layer3`` (as torchvision's ``aux_loss``).
        backbone_width: Scale the backbone down; ``None`` = standard widths.
        align_corners: Corner-aligned bilinear resizes, the paper's geometry (caffe's
            ``Interp`` / TF DeepLab: logit ``i`` at input pixel ``output_stride * i``; see
            the module docstring); ``False`` is PyTorch's default (mmseg, torchvision).
        backbone_stages: ResNet stages kept after the stem (4 = the whole backbone). 1 keeps
            stem + ``layer1`` (output stride 4, a 43 px receptive field before the ASPP), so
            the ASPP rates decide how far a pixel sees: the synthetic lab's ``far_cue``
            factor (``docs/datasets.md``). Fewer than 4 stages need ``multi_grid=None``,
            an output stride the kept stages give (1: 4; 2: 8; 3: 8 or 16) and no ``aux``.
    """

    def __init__(
        self,
        num_classes: int,
        backbone: DeepLabV3BackboneName = "resnet101",
        pretrained: bool = False,
        output_stride: OutputStride | Literal[4] = 16,
        atrous_rates: tuple[int, ...] | None = None,
        multi_grid: tuple[int, ...] | None = (1, 2, 4),
        image_pooling: bool = True,
        separable: bool = False,
        head: V3Head = "paper",
        aspp_channels: int | None = None,
        upsample: UpsampleMode = "bilinear",
        aux: bool = False,
        backbone_width: int | None = None,
        align_corners: bool = False,
        backbone_stages: int = 4,
    ) -> None:
        super().__init__(num_classes)
        check_choice("head", head, V3Head)
        rates, ch = self._init_encoder(
            backbone,
            output_stride,
            pretrained,
            backbone_width,
            atrous_rates,
            multi_grid,
            aux,
            backbone_stages,
            aspp_channels,
        )
        self.classifier = DeepLabHead(
            self.backbone.channels["out"],
            num_classes,
            rates,
            ch,
            image_pooling,
            separable,
            head,
        )
        self._init_common(
            num_classes,
            upsample,
            aux,
            aux_channel_dropout=head == "mmseg",
            align_corners=align_corners,
        )

    def _logits(self, feats: dict[str, Tensor]) -> Tensor:
        return self.classifier(feats["out"])


@register_model("deeplabv3plus", tiny=TINY_RESNET)
class DeepLabV3Plus(_DeepLabV3Base):
    """DeepLab v3+: v3 encoder (ASPP output, no classifier) + a decoder that upsamples it to
    the stride-4 features, fuses them with the low-level features reduced to 48 channels
    (1x1 conv + BN + ReLU), refines with 3x3 convs and classifies.

    Backbones: the dilated ResNets (low-level features: ``layer1``) or the paper's aligned
    Xception-65 (low-level features: entry flow block 2 before its stride, 256 channels).

    ``fusion=concat`` is the paper's; ``fusion=sum`` reduces the low-level features to the
    ASPP width instead of 48 so the two maps can be added (the refinement convs then see
    ``aspp_channels`` instead of ``aspp_channels + 48`` channels).

    ``decoder_layout`` picks between three published layouts of the same design:

    * ``paper`` (TF DeepLab, the v3+ paper): ASPP concat -> 1x1 projection + BN + ReLU ->
      dropout 0.1; separable convs with BN + ReLU after the depthwise conv; two 3x3
      refinement convs after the fusion; 1x1 classifier.
    * ``mmseg`` (mmseg's ``DepthwiseSeparableASPPHead``, ``deeplabv3plus_r50-d8``): the
      projection after the ASPP concat is a **3x3** conv + BN + ReLU (``bottleneck``; with
      512 channels 10,485,760 weights more than a 1x1), no dropout there, two separable
      refinement convs, then ``Dropout2d(0.1)`` and the 1x1 classifier (``cls_seg``).
    * ``smp`` (segmentation-models-pytorch 0.6's ``DeepLabV3Plus``): depthwise and pointwise
      convs back to back, ASPP dropout 0.5, one 3x3 conv + BN + ReLU on the ASPP output (at
      the output stride) and one after the fusion. It keeps fewer stride-4 activations for
      backward. With ``atrous_rates=(12, 24, 36)`` and ``multi_grid=(1,)`` (smp dilates every
      block of the last stage) it has smp's layers in smp's order, and smp's weights load
      into it by position; at output stride 16 (smp's default) and ``align_corners=True``
      (smp's two fixed bilinear resizes) it gives smp's logits. At output stride 8 smp also
      dilates the first block of ``layer3``, which seglit (as torchvision) keeps at rate 1
      (``tests/models/test_smp_parity.py``).

    Args:
        num_classes: Number of classes.
        backbone: ``resnet18/34/50/101`` or ``xception65`` (the paper's best).
        pretrained: ImageNet weights for the backbone.
        output_stride: 8, 16 (the paper's) or 32; 4 with ``backbone_stages=1``.
        atrous_rates: ASPP rates; ``None`` = (6, 12, 18) at OS16, doubled at OS8.
        multi_grid: Unit rates of the last stage; ``None`` = torchvision's scheme.
        image_pooling: Add the image-level pooling branch to ASPP.
        separable: Atrous depthwise-separable convs in ASPP and decoder (the paper's).
        fusion: ``concat`` (paper) or ``sum`` of decoder inputs.
        low_level_channels: Reduction of the stride-4 features for concat (48 = paper).
        aspp_channels: ASPP/decoder width; ``None`` = 256 (scaled with ``backbone_width``).
        upsample: How the ASPP output and the logits are upsampled.
        aux: Auxiliary FCN head on the stride-16 stage (``layer3``).
        backbone_width: Scale the backbone down; ``None`` = standard widths.
        decoder_layout: ``paper``, ``mmseg`` or ``smp`` (see above).
        align_corners: Corner-aligned bilinear resizes, the paper's geometry (caffe's
            ``Interp`` / TF DeepLab: logit ``i`` at input pixel ``output_stride * i``; see
            the module docstring); ``False`` is PyTorch's default (mmseg, torchvision).
        backbone_stages: ResNet stages kept after the stem, as in :class:`DeepLabV3` (with
            1 the low-level features are the ASPP's input, ``layer1``).
    """

    def __init__(
        self,
        num_classes: int,
        backbone: DeepLabV3BackboneName = "resnet101",
        pretrained: bool = False,
        output_stride: OutputStride | Literal[4] = 16,
        atrous_rates: tuple[int, ...] | None = None,
        multi_grid: tuple[int, ...] | None = None,
        image_pooling: bool = True,
        separable: bool = True,
        fusion: FusionMode = "concat",
        low_level_channels: int = 48,
        aspp_channels: int | None = None,
        upsample: UpsampleMode = "bilinear",
        aux: bool = False,
        backbone_width: int | None = None,
        decoder_layout: DecoderLayout = "paper",
        align_corners: bool = False,
        backbone_stages: int = 4,
    ) -> None:
        super().__init__(num_classes)
        check_choice("fusion", fusion, FusionMode)
        check_choice("decoder_layout", decoder_layout, DecoderLayout)
        rates, ch = self._init_encoder(
            backbone,
            output_stride,
            pretrained,
            backbone_width,
            atrous_rates,
            multi_grid,
            aux,
            backbone_stages,
            aspp_channels,
        )
        self.fusion = fusion
        smp = decoder_layout == "smp"

        def refine_conv(in_channels: int) -> nn.Module:
            if separable:
                return SeparableConv2d(in_channels, ch, depthwise_bn=not smp)
            return conv_bn_relu(in_channels, ch, 3)

        aspp_kwargs = {
            "paper": {"dropout": 0.1},
            "mmseg": {"project_kernel": 3, "dropout": 0.0},
            "smp": {"dropout": 0.5, "depthwise_bn": False},
        }[decoder_layout]
        self.aspp = ASPP(
            self.backbone.channels["out"],
            rates,
            ch,
            image_pooling,
            separable,
            **aspp_kwargs,
        )
        self.aspp_refine = refine_conv(ch) if smp else None
        low_ch = low_level_channels if fusion == "concat" else ch
        self.low_level = conv_bn_relu(self.backbone.channels["stride4"], low_ch, 1)
        self.up_aspp = Upsample(
            ch,
            ch,
            max(1, output_stride // 4),
            upsample,
            bilinear_init=True,
            align_corners=align_corners,
        )
        in_ch = ch + low_ch if fusion == "concat" else ch
        refine = [refine_conv(in_ch)] if smp else [refine_conv(in_ch), refine_conv(ch)]
        self.decoder = nn.Sequential(*refine)
        self.dropout = nn.Dropout2d(0.1) if decoder_layout == "mmseg" else None
        self.classifier = nn.Conv2d(ch, num_classes, 1)
        self._init_common(
            num_classes,
            upsample,
            aux,
            final_scale=4,
            aux_channel_dropout=decoder_layout == "mmseg",
            align_corners=align_corners,
        )

    def _logits(self, feats: dict[str, Tensor]) -> Tensor:
        low = self.low_level(feats["stride4"])
        x = self.aspp(feats["out"])
        if self.aspp_refine is not None:
            x = self.aspp_refine(x)
        x = self.up_aspp(x, low.shape[-2:])
        x = torch.cat([x, low], dim=1) if self.fusion == "concat" else x + low
        x = self.decoder(x)
        if self.dropout is not None:
            x = self.dropout(x)
        return self.classifier(x)
