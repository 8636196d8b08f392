"""Fully convolutional networks (Long et al. 2015): FCN-32s, FCN-16s, FCN-8s.

The backbone (VGG16 with fc6/fc7 as convolutions, or a ResNet / Xception-65) produces
features; 1x1 "score" convolutions map features to class scores at stride 32 (``score_fr``),
16 (``score_pool4``) and 8 (``score_pool3``). FCN-16s/8s upsample the coarser scores x2 and
fuse them with the finer ones (``fusion=sum`` as in the paper, or ``concat`` followed by a
1x1 conv 2C -> C initialised to ``[I, I]`` so it starts out equal to the sum), then upsample
the result to the input size.

What the reference nets (fcn.berkeleyvision.org ``voc-fcn*``) do and how to get it here:

* score layers (``score_fr``, ``score_pool4``, ``score_pool3``) start at zero (caffe's
  default ``constant`` filler; ``head="score"``);
* upsampling: transposed convs (kernel 2s, stride s, no bias) initialised to bilinear
  interpolation. The CVPR 2015 paper (Sec. 4.2/4.3) learns the x2 upsamplings and keeps the
  final one fixed at bilinear interpolation (``learn_upsampling="skips"``); the reference
  implementation keeps all of them fixed (``learn_upsampling=False``, lr_mult 0);
  ``learn_upsampling=True`` (seglit's default) learns all of them, neither source's;
* the "at-once" FCN-8s (``voc-fcn8s-atonce``) scales pool4 by 0.01 and pool3 by 0.0001
  before their score layers (``skip_scale=True``; caffe ``Scale`` layers with lr_mult 0);
* fc6 and fc7 are followed by ReLU and element-wise dropout 0.5 (``fc_dropout="element"``).

Sizes: by default all convs use "same" padding and pools are ceil-mode (no ``pad=100`` on
conv1_1, and fc6 is padded by 3), so the stride-s map has ``ceil(H / s)`` pixels; upsampled
maps are cropped at the bottom/right to the finer map / input size. There the fixed
bilinear deconvolutions lack their outer neighbour at the image border and differ from
bilinear interpolation (interior exact). ``input_padding=100`` is the reference's geometry:
conv1_1 pads by 100, fc6 and the deconvolutions by 0, and every skip and the output are
cropped at caffe's offsets (:func:`caffe_crop_offsets`: 5 and 9 for the skips and 31 for the
output of FCN-8s, 5 and 27 for FCN-16s, 19 for FCN-32s), so the coarse maps extend past the
image and the upsampling is bilinear interpolation up to the border.
"""

from __future__ import annotations

from typing import ClassVar, Literal

import torch.nn.functional as F
from torch import Tensor, nn

from seglit.models.backbones import build_backbone
from seglit.models.base import SegmentationModel
from seglit.models.blocks import Fuse, Upsample
from seglit.models.heads import FCNHead
from seglit.models.knobs import (
    BackboneName,
    DropoutKind,
    FusionMode,
    OutputStride,
    UpsampleMode,
    check_choice,
)
from seglit.models.registry import register_model

FCNHeadName = Literal["score", "fcn"]
TINY = {"backbone": "vgg16", "backbone_width": 4}
SKIP_SCALES = {"pool4": 0.01, "pool3": 0.0001}
"""voc-fcn8s-atonce's fixed ``scale_pool4`` / ``scale_pool3`` factors."""


def caffe_crop_offsets(input_padding: int, skips: int) -> dict[str, int]:
    """caffe's crop offsets of the VGG16 FCN with conv1_1 padded by ``input_padding``.

    Each map is placed on the input by ``x = a * u + b`` (pixel ``u`` of the map is centred
    on input pixel ``x``): conv1_1 (3x3, pad P) gives ``b = 1 - P``; a 2x2 stride-2 pool
    doubles ``a`` and adds ``a / 2`` to ``b``; fc6 (7x7, pad 0) adds ``3 a``; a deconvolution
    (kernel 2s, stride s, pad 0) divides ``a`` by s and subtracts ``a (2s - 1) / (2s)``. A
    skip is cropped where its map meets the upsampled one, the output where it meets the
    input: the arithmetic of fcn.berkeleyvision.org's ``coord_map`` for ``voc-fcn*/net.py``.

    Args:
        input_padding: conv1_1's padding (100 in the reference nets).
        skips: 0 (FCN-32s), 1 (16s) or 2 (8s).

    Returns:
        ``{"pool4": offset, "pool3": offset, "out": offset}`` (the skips that exist).
    """
    a, b = 1.0, 1.0 - input_padding
    stages = {}
    for n in range(1, 6):
        b += a / 2
        a *= 2
        stages[n] = (a, b)
    a, b = stages[5]
    b += 3 * a  # fc6: 7x7, no padding
    offsets = {}
    for name, stage in (("pool4", 4), ("pool3", 3))[:skips]:
        b -= a * 3 / 4  # deconvolution x2: kernel 4, stride 2
        a /= 2
        sa, sb = stages[stage]
        offsets[name] = round((b - sb) / sa)
    b -= a * (2 * a - 1) / (2 * a)  # deconvolution to the input: kernel 2a, stride a
    offsets["out"] = round(-b)
    return offsets


class FCN(SegmentationModel):
    """Fully convolutional network; subclasses fix the number of skips (FCN-32s/16s/8s).

    Args:
        num_classes: Number of classes.
        backbone: ``vgg16`` (fc6/fc7 as convs, the paper's), ``resnet18/34/50/101`` or
            ``xception65``.
        pretrained: Load ImageNet weights for the backbone (from the torch hub cache).
        output_stride: 8, 16 or 32 (dilation replaces the last strides).
        fusion: How a skip's scores are merged with the upsampled coarser scores: ``sum``
            (the paper's) or ``concat`` + 1x1 conv initialised to the sum. FCN-32s has no
            skips and refuses ``concat``.
        upsample: ``transposed`` (kernel 2s, stride s), ``bilinear``, ``nearest_conv`` or
            ``bilinear_conv``.
        bilinear_init: Initialise transposed convs to bilinear interpolation (FCN).
        learn_upsampling: Train the bilinear-initialised transposed convs: ``True`` (all of
            them; the default), ``"skips"`` (the x2 ones, the final one fixed: the CVPR
            paper's) or ``False`` (none, ``requires_grad=False``: the reference
            implementation's lr_mult 0). Fixing any needs ``upsample="transposed"`` with
            ``bilinear_init=True``, or ``bilinear``.
        skip_scale: Multiply pool4 by 0.01 and pool3 by 0.0001 before ``score_pool4`` /
            ``score_pool3`` (voc-fcn8s-atonce's fixed scale layers, for training all at once
            from VGG16). FCN-32s has no skips and refuses it.
        fc_dropout: Dropout after VGG16's fc6 and fc7: ``element`` (``nn.Dropout(0.5)``,
            caffe's and torchvision's VGG, the paper's) or ``channel`` (``nn.Dropout2d``).
            ResNet and Xception backbones have no dropout; there it changes nothing.
        head: ``score`` (1x1 conv, zero-initialised, the paper's) or ``fcn``
            (torchvision's 3x3 conv + BN + ReLU + dropout + 1x1).
        aux: Add an auxiliary FCN head on the stride-16 stage (training output becomes
            ``{"out", "aux"}``).
        backbone_width: Scale the backbone down (first-stage width; ``None`` = standard).
        input_padding: 0 (seglit's "same" geometry) or the reference's conv1_1 padding
            (100) with unpadded fc6 and deconvolutions and caffe's crops (see the module
            docstring); needs the VGG16 backbone at output stride 32,
            ``upsample="transposed"`` and no aux head.
    """

    skips: ClassVar[int] = 2
    """Number of skip connections: 0 (32s), 1 (16s) or 2 (8s)."""

    def __init__(
        self,
        num_classes: int,
        backbone: BackboneName = "vgg16",
        pretrained: bool = False,
        output_stride: OutputStride = 32,
        fusion: FusionMode = "sum",
        upsample: UpsampleMode = "transposed",
        bilinear_init: bool = True,
        learn_upsampling: bool | Literal["skips"] = True,
        skip_scale: bool = False,
        fc_dropout: DropoutKind = "element",
        head: FCNHeadName = "score",
        aux: bool = False,
        backbone_width: int | None = None,
        input_padding: int = 0,
    ) -> None:
        super().__init__(num_classes)
        check_choice("head", head, FCNHeadName)
        if input_padding and (
            backbone != "vgg16" or output_stride != 32 or upsample != "transposed" or aux
        ):
            raise ValueError(
                f"invalid input_padding={input_padding}: caffe's padded geometry needs "
                "backbone='vgg16', output_stride=32, upsample='transposed' and no aux head; "
                f"got backbone={backbone!r}, output_stride={output_stride}, "
                f"upsample={upsample!r}, aux={aux}"
            )
        check_choice("fc_dropout", fc_dropout, DropoutKind)
        if self.skips == 0 and fusion != "sum":
            raise ValueError(
                f"invalid fusion={fusion!r}: {type(self).__name__} has no skips to fuse"
            )
        if self.skips == 0 and skip_scale:
            raise ValueError(
                f"invalid skip_scale=True: {type(self).__name__} has no skips to scale"
            )
        check_choice("learn_upsampling", learn_upsampling, (True, False, "skips"))
        fixable = upsample == "bilinear" or (upsample == "transposed" and bilinear_init)
        if learn_upsampling is not True and not fixable:
            raise ValueError(
                f"invalid learn_upsampling={learn_upsampling!r}: it keeps the transposed "
                "convs fixed at bilinear interpolation, so it needs upsample='transposed' with "
                f"bilinear_init=True (or 'bilinear'); got upsample={upsample!r}, "
                f"bilinear_init={bilinear_init}"
            )
        self.aux = aux
        self.skip_scale = skip_scale
        self.backbone = build_backbone(
            backbone,
            output_stride,
            pretrained,
            backbone_width,
            vgg_fc=True,
            vgg_dropout=fc_dropout,
        )
        self.output_stride = output_stride
        ch, st = self.backbone.channels, self.backbone.strides
        c = num_classes
        if head == "score":
            self.classifier: nn.Module = nn.Sequential(nn.Conv2d(ch["out"], c, 1))
        else:
            self.classifier = FCNHead(ch["out"], c)

        def up(scale: int) -> Upsample:
            return Upsample(c, c, scale, upsample, bilinear_init=bilinear_init)

        stride = st["out"]
        if self.skips >= 1:
            self.score_pool4 = nn.Conv2d(ch["stride16"], c, 1)
            self.up_pool4 = up(stride // st["stride16"])
            self.fuse_pool4 = Fuse(c, fusion)
            stride = st["stride16"]
        if self.skips >= 2:
            self.score_pool3 = nn.Conv2d(ch["stride8"], c, 1)
            self.up_pool3 = up(stride // st["stride8"])
            self.fuse_pool3 = Fuse(c, fusion)
            stride = st["stride8"]
        # the reference nets' score layers use caffe's default filler: constant zero
        scores = [self.classifier[0]] if head == "score" else []
        scores += [getattr(self, n) for n in ("score_pool4", "score_pool3") if hasattr(self, n)]
        for layer in scores:
            nn.init.zeros_(layer.weight)
            nn.init.zeros_(layer.bias)
        self.up_final = up(stride)
        if learn_upsampling is not True:
            fixed = ("up_final",) if learn_upsampling == "skips" else ("up_pool4", "up_pool3")
            for name in fixed + ("up_final",):
                if hasattr(self, name):
                    getattr(self, name).requires_grad_(False)
        self.aux_classifier = FCNHead(ch["stride16"], c) if aux else None
        self.input_padding = input_padding
        self.crop_offsets: dict[str, int] = {}
        if input_padding:
            self.crop_offsets = caffe_crop_offsets(input_padding, self.skips)
            if min(self.crop_offsets.values()) < 0:
                raise ValueError(
                    f"invalid input_padding={input_padding}: too small for caffe's crops "
                    f"(offsets {self.crop_offsets}); the reference pads by 100"
                )
            self.backbone.fc6.padding = (0, 0)
            for name in ("up_pool4", "up_pool3", "up_final"):
                if hasattr(self, name):
                    getattr(self, name).conv.padding = (0, 0)

    def forward(self, x: Tensor) -> Tensor | dict[str, Tensor]:
        """Map (N, 3, H, W) to logits (N, C, H, W); ``{"out", "aux"}`` when training with aux."""
        self.check_input(x)
        size = x.shape[-2:]
        if self.input_padding:
            # conv1_1 pads by 1 itself: together caffe's pad=input_padding
            pad = self.input_padding - 1
            feats = self.backbone(F.pad(x, (pad, pad, pad, pad)))
        else:
            feats = self.backbone(x)
        score = self.classifier(feats["out"])
        for name, key in (("pool4", "stride16"), ("pool3", "stride8"))[: self.skips]:
            skip_in = feats[key] * SKIP_SCALES[name] if self.skip_scale else feats[key]
            skip = getattr(self, f"score_{name}")(skip_in)
            up = getattr(self, f"up_{name}")
            fuse = getattr(self, f"fuse_{name}")
            if self.input_padding:  # caffe: crop the skip where it meets the upsampled map
                score = up.conv(score)
                skip = _crop(skip, self.crop_offsets[name], score.shape[-2:])
            else:
                score = up(score, skip.shape[-2:])
            score = fuse(score, skip)
        if self.input_padding:
            out = _crop(self.up_final.conv(score), self.crop_offsets["out"], size)
        else:
            out = self.up_final(score, size)
        if self.aux_classifier is not None and self.training:
            aux = self.aux_classifier(feats["stride16"])
            aux = nn.functional.interpolate(aux, size=size, mode="bilinear", align_corners=False)
            return {"out": out, "aux": aux}
        return out


def _crop(x: Tensor, offset: int, size: tuple[int, int] | Tensor) -> Tensor:
    """caffe's ``Crop``: ``size`` pixels from ``offset`` on both axes."""
    h, w = int(size[0]), int(size[1])
    if x.shape[-2] < offset + h or x.shape[-1] < offset + w:
        raise ValueError(f"cannot crop {tuple(size)} at offset {offset} from {tuple(x.shape)}")
    return x[..., offset : offset + h, offset : offset + w]


@register_model("fcn32s", tiny=TINY)
class FCN32s(FCN):
    """FCN-32s: score the last feature map and upsample x32 in one step (see :class:`FCN`)."""

    skips = 0


@register_model("fcn16s", tiny=TINY)
class FCN16s(FCN):
    """FCN-16s: FCN-32s scores upsampled x2 and fused with stride-16 scores, then x16."""

    skips = 1


@register_model("fcn8s", tiny=TINY)
class FCN8s(FCN):
    """FCN-8s: FCN-16s fused map upsampled x2 and fused with stride-8 scores, then x8."""

    skips = 2
