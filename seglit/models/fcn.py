"""Fully convolutional networks (Long et al. 2015): FCN-32s, FCN-16s, FCN-8s.

The backbone (VGG16 with fc6/fc7 as convolutions, or a ResNet) produces features; 1x1
"score" convolutions map features to class scores at stride 32 (``score_fr``), 16
(``score_pool4``) and 8 (``score_pool3``). FCN-16s/8s upsample the coarser scores x2 and fuse
them with the finer ones (``fusion=sum`` as in the paper, or ``concat`` followed by a 1x1
conv 2C -> C initialised to ``[I, I]`` so it starts out equal to the sum), then upsample the
result to the input size.

Sizes: all convs use "same" padding and pools are ceil-mode (no ``pad=100`` trick), so the
stride-s map has ``ceil(H / s)`` pixels; upsampled maps are cropped at the bottom/right to
the finer map / input size.
"""

from __future__ import annotations

from typing import ClassVar, Literal

from torch import Tensor, nn

from seglit.models.backbones import build_backbone
from seglit.models.base import SegmentationModel
from seglit.models.blocks import Fuse, Upsample
from seglit.models.heads import FCNHead
from seglit.models.knobs import BackboneName, FusionMode, OutputStride, UpsampleMode, check_choice
from seglit.models.registry import register_model

FCNHeadName = Literal["score", "fcn"]
TINY = {"backbone": "vgg16", "backbone_width": 4}


class FCN(SegmentationModel):
    """Fully convolutional network; subclasses fix the number of skips (FCN-32s/16s/8s).

    Args:
        num_classes: Number of classes.
        backbone: ``vgg16`` (fc6/fc7 as convs, the paper's) or ``resnet18/34/50/101``.
        pretrained: Load ImageNet weights for the backbone (from the torch hub cache).
        output_stride: 8, 16 or 32 (dilation replaces the last strides).
        fusion: How a skip's scores are merged with the upsampled coarser scores: ``sum``
            (the paper's) or ``concat`` + 1x1 conv initialised to the sum. FCN-32s has no
            skips and refuses ``concat``.
        upsample: ``transposed`` (kernel 2s, stride s), ``bilinear``, ``nearest_conv`` or
            ``bilinear_conv``.
        bilinear_init: Initialise transposed convs to bilinear interpolation (FCN).
        head: ``score`` (1x1 conv, the paper's) or ``fcn`` (torchvision's 3x3+BN+ReLU+1x1).
        aux: Add an auxiliary FCN head on the stride-16 stage (training output becomes
            ``{"out", "aux"}``).
        backbone_width: Scale the backbone down (first-stage width; ``None`` = standard).
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
        head: FCNHeadName = "score",
        aux: bool = False,
        backbone_width: int | None = None,
    ) -> None:
        super().__init__(num_classes)
        check_choice("head", head, FCNHeadName)
        if self.skips == 0 and fusion != "sum":
            raise ValueError(
                f"invalid fusion={fusion!r}: {type(self).__name__} has no skips to fuse"
            )
        self.aux = aux
        self.backbone = build_backbone(
            backbone, output_stride, pretrained, backbone_width, vgg_fc=True
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
        for name in ("score_pool4", "score_pool3"):
            if hasattr(self, name):  # the paper zero-initialises the skip scores
                nn.init.zeros_(getattr(self, name).weight)
                nn.init.zeros_(getattr(self, name).bias)
        self.up_final = up(stride)
        self.aux_classifier = FCNHead(ch["stride16"], c) if aux else None

    def forward(self, x: Tensor) -> Tensor | dict[str, Tensor]:
        """Map (N, 3, H, W) to logits (N, C, H, W); ``{"out", "aux"}`` when training with aux."""
        self.check_input(x)
        size = x.shape[-2:]
        feats = self.backbone(x)
        score = self.classifier(feats["out"])
        if self.skips >= 1:
            skip = self.score_pool4(feats["stride16"])
            score = self.fuse_pool4(self.up_pool4(score, skip.shape[-2:]), skip)
        if self.skips >= 2:
            skip = self.score_pool3(feats["stride8"])
            score = self.fuse_pool3(self.up_pool3(score, skip.shape[-2:]), skip)
        out = self.up_final(score, size)
        if self.aux_classifier is not None and self.training:
            aux = self.aux_classifier(feats["stride16"])
            aux = nn.functional.interpolate(aux, size=size, mode="bilinear", align_corners=False)
            return {"out": out, "aux": aux}
        return out


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
