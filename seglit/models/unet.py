"""U-Net (Ronneberger et al. 2015) with configurable depth, width, skip fusion and upsampling.

Odd input sizes: the encoder uses "same" padded 3x3 convs and 2x2 max pooling (floor), so a
level of size ``s`` becomes ``floor(s / 2)``; the 2x upsampled map then has ``s`` or ``s - 1``
pixels. Before fusing, the upsampled map is zero-padded at the bottom/right to the skip's
size (:func:`seglit.models.blocks.align_to`); the skip is never cropped, so the output has the
input's H and W for any size (99x101, 375x500, ...).

:class:`ResNetUNet` is a second, separate U-Net: segmentation-models-pytorch's ``Unet`` with a
ResNet encoder, rebuilt from seglit parts (see its docstring).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seglit.models.backbones import ResNetBackbone
from seglit.models.base import SegmentationModel
from seglit.models.blocks import Upsample, align_to, conv_bn_relu
from seglit.models.heads import FCNHead
from seglit.models.knobs import FusionMode, ResNetName, UpsampleMode, check_choice
from seglit.models.registry import register_model

ResNetUNetUpsample = Literal["nearest", "bilinear", "transposed"]
UNetHead = Literal["1x1", "fcn"]
"""U-Net classifier: the paper's 1x1 conv, or mmseg's FCN head."""
# encoder features used as skips, deepest first; the last decoder stage has no skip
RESNET_UNET_SKIPS = ("stride16", "stride8", "stride4", "stride2")


def double_conv(in_channels: int, out_channels: int, batch_norm: bool) -> nn.Sequential:
    """Two 3x3 convs (same padding), each followed by optional BN and ReLU."""
    layers: list[nn.Module] = []
    for c_in in (in_channels, out_channels):
        layers.append(nn.Conv2d(c_in, out_channels, 3, padding=1, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm2d(out_channels))
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class UpsampleNorm(nn.Module):
    """A U-Net decoder upsampling followed by BN + ReLU: mmseg U-Net's ``InterpConv``
    (``upsample="bilinear"``: bilinear resize, then 1x1 conv without bias + BN + ReLU) or
    ``DeconvModule``-like (the other modes: :class:`~seglit.models.blocks.Upsample`, then
    BN + ReLU).

    Args:
        in_channels: Channels of the deeper map.
        out_channels: Channels after the upsampling (the skip's).
        mode: Upsampling mode.
        kernel_size: Transposed-conv kernel (``transposed`` only).
    """

    def __init__(
        self, in_channels: int, out_channels: int, mode: str, kernel_size: int | None = None
    ) -> None:
        super().__init__()
        check_choice("upsample", mode, UpsampleMode)
        self.up: Upsample | None = None
        self.conv: nn.Conv2d | None = None
        if mode == "bilinear":
            self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        else:
            self.up = Upsample(in_channels, out_channels, 2, mode, kernel_size=kernel_size)
        self.bn = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor, size: Sequence[int]) -> Tensor:
        """Upsample ``x`` to spatial ``size`` (H, W), then BN + ReLU."""
        if self.up is not None:
            x = self.up(x, size)
        else:
            size = (int(size[0]), int(size[1]))
            if tuple(x.shape[-2:]) != size:
                x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
            x = self.conv(x)
        return self.relu(self.bn(x))


@register_model("unet", tiny={"base_width": 4, "depth": 3})
class UNet(SegmentationModel):
    """U-Net for semantic segmentation.

    Level ``i`` (0-based) has ``base_width * 2**i`` channels; ``depth`` levels means
    ``depth - 1`` poolings (the paper's U-Net is ``base_width=64, depth=5, batch_norm=False``,
    31.0M params; the paper's convs are unpadded, seglit's "same" padded).

    Skip fusion: every decoder stage first upsamples the deeper map *to the skip's channel
    count*. ``concat`` then concatenates (2C channels) and the double conv reduces 2C -> C;
    ``sum`` adds (C channels) and the double conv maps C -> C. Both variants see the same
    information with the same widths; they differ only in the first conv of each stage.

    mmseg's UNet-S5-D16 + FCN (``fcn_unet_s5-d16``) is ``base_width=64, depth=5,
    fusion="concat", upsample="bilinear", upsample_norm=True, batch_norm=True, head="fcn",
    aux=True``: the same layers and parameter count (mmseg concatenates ``[skip, up]``,
    seglit ``[up, skip]``: the first decoder conv's input channels are permuted).

    Args:
        num_classes: Number of output classes.
        in_channels: Input channels.
        base_width: Channels of the first level.
        depth: Number of resolution levels (>= 2).
        fusion: How skips are merged: ``sum`` or ``concat``.
        upsample: ``transposed`` (2x2 up-conv, stride 2, the paper's), ``bilinear`` (fixed
            interpolation + 1x1 conv to halve channels), ``nearest_conv`` or
            ``bilinear_conv`` (resize, then 3x3 conv).
        batch_norm: Use BatchNorm after every conv (the paper has none).
        upsample_kernel: Kernel of the stride-2 transposed conv (2 = paper; 3 overlaps
            unevenly and invites checkerboard artifacts; 4 overlaps evenly).
        upsample_norm: BN + ReLU after each decoder upsampling (mmseg U-Net's
            ``InterpConv``; with ``upsample="bilinear"`` the order becomes resize -> 1x1
            conv without bias -> BN -> ReLU). Needs ``batch_norm=True``.
        head: ``1x1`` (the paper's 1x1 conv to classes) or ``fcn`` (mmseg's ``FCNHead``:
            3x3 conv to ``base_width`` + BN + ReLU + ``Dropout2d(0.1)`` + 1x1).
        aux: Auxiliary mmseg ``FCNHead`` (3x3 conv ``2 * base_width`` -> ``base_width``
            + BN + ReLU + ``Dropout2d(0.1)`` + 1x1) on the level-1 (stride 2) decoder map;
            training output becomes ``{"out", "aux"}``.
        dropout: Element-wise dropout on the output of the deepest level, the end of the
            contracting path ("drop-out layers at the end of the contracting path", the
            paper's Sec. 3.1; 0.5 is caffe's ``dropout_ratio``); 0 = none (mmseg's UNet).
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        base_width: int = 64,
        depth: int = 5,
        fusion: FusionMode = "concat",
        upsample: UpsampleMode = "transposed",
        batch_norm: bool = True,
        upsample_kernel: int = 2,
        upsample_norm: bool = False,
        head: UNetHead = "1x1",
        aux: bool = False,
        dropout: float = 0.0,
    ) -> None:
        super().__init__(num_classes, in_channels)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"invalid dropout={dropout!r}; expected a probability in [0, 1)")
        check_choice("fusion", fusion, FusionMode)
        check_choice("head", head, UNetHead)
        if upsample_norm and not batch_norm:
            raise ValueError(
                "invalid upsample_norm=True with batch_norm=False: it adds BatchNorm after "
                "each upsampling (mmseg's InterpConv), in a network with BatchNorm"
            )
        if upsample_kernel < 2:
            raise ValueError(f"invalid upsample_kernel={upsample_kernel!r}; expected an int >= 2")
        if depth < 2:
            raise ValueError(f"invalid depth={depth!r}; expected an int >= 2")
        if base_width < 1:
            raise ValueError(f"invalid base_width={base_width!r}; expected an int >= 1")
        self.backbone = None  # trained from scratch: no pretrainable part
        self.depth = depth
        self.fusion = fusion
        self.output_stride = 2 ** (depth - 1)
        widths = [base_width * 2**i for i in range(depth)]

        self.encoder = nn.ModuleList([double_conv(in_channels, widths[0], batch_norm)])
        for i in range(1, depth):
            self.encoder.append(double_conv(widths[i - 1], widths[i], batch_norm))
        self.pool = nn.MaxPool2d(2)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else None

        self.ups = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for i in reversed(range(depth - 1)):
            kernel = upsample_kernel if upsample == "transposed" else None
            if upsample_norm:
                self.ups.append(UpsampleNorm(widths[i + 1], widths[i], upsample, kernel))
            else:
                self.ups.append(Upsample(widths[i + 1], widths[i], 2, upsample, kernel_size=kernel))
            fused = 2 * widths[i] if fusion == "concat" else widths[i]
            self.decoder.append(double_conv(fused, widths[i], batch_norm))
        if head == "1x1":
            self.head: nn.Module = nn.Conv2d(widths[0], num_classes, 1)
        else:
            self.head = FCNHead(widths[0], num_classes, widths[0], channel_dropout=True)
        self.aux_classifier = (
            FCNHead(widths[1], num_classes, widths[0], channel_dropout=True) if aux else None
        )

    def forward(self, x: Tensor) -> Tensor | dict[str, Tensor]:
        """Map (N, in_channels, H, W) to logits (N, num_classes, H, W); ``{"out", "aux"}``
        when training with ``aux``."""
        self.check_input(x)
        min_size = 2 ** (self.depth - 1)
        if min(x.shape[-2:]) < min_size:
            raise ValueError(
                f"input {tuple(x.shape[-2:])} too small for UNet depth={self.depth}: "
                f"H and W must be >= {min_size}"
            )
        skips: list[Tensor] = []
        for i, block in enumerate(self.encoder):
            if i > 0:
                x = self.pool(x)
            x = block(x)
            skips.append(x)
        x = skips.pop()
        if self.dropout is not None:
            x = self.dropout(x)
        want_aux = self.aux_classifier is not None and self.training
        level1 = x if want_aux and self.depth == 2 else None  # decoder map at stride 2 (aux)
        for i, (up, block) in enumerate(zip(self.ups, self.decoder)):
            skip = skips.pop()
            x = up(x, skip.shape[-2:])
            x = torch.cat([x, skip], dim=1) if self.fusion == "concat" else x + skip
            x = block(x)
            if want_aux and i == self.depth - 3:
                level1 = x
        out = self.head(x)
        if want_aux:
            aux = self.aux_classifier(level1)
            aux = F.interpolate(aux, size=out.shape[-2:], mode="bilinear", align_corners=False)
            return {"out": out, "aux": aux}
        return out


# ------------------------------------------------------------------ U-Net, ResNet encoder


class ResNetUNetBlock(nn.Module):
    """One decoder stage of :class:`ResNetUNet`: upsample to the skip's size, concatenate
    the skip (if any), then two 3x3 conv + BN + ReLU.

    Args:
        in_channels: Channels of the deeper map.
        skip_channels: Channels of the skip (0: no skip).
        out_channels: Output channels.
        upsample: ``nearest`` / ``bilinear`` interpolation, or a learned 2x2 stride-2
            transposed conv (``in_channels`` -> ``in_channels``) cropped/padded to size.
    """

    def __init__(
        self, in_channels: int, skip_channels: int, out_channels: int, upsample: str
    ) -> None:
        super().__init__()
        self.upsample = upsample
        self.up: nn.ConvTranspose2d | None = None
        if upsample == "transposed":
            self.up = nn.ConvTranspose2d(in_channels, in_channels, 2, stride=2)
        self.conv1 = conv_bn_relu(in_channels + skip_channels, out_channels)
        self.conv2 = conv_bn_relu(out_channels, out_channels)

    def forward(self, x: Tensor, size: Sequence[int], skip: Tensor | None = None) -> Tensor:
        """Upsample ``x`` to ``size`` (H, W), fuse ``skip`` (same size) and convolve."""
        size = (int(size[0]), int(size[1]))
        if self.up is not None:
            x = align_to(self.up(x), size)
        elif self.upsample == "bilinear":
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        else:
            x = F.interpolate(x, size=size, mode="nearest")
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.conv2(self.conv1(x))


@register_model(
    "unet_resnet",
    tiny={"backbone": "resnet18", "backbone_width": 4, "decoder_channels": (16, 8, 8, 4, 4)},
)
class ResNetUNet(SegmentationModel):
    """U-Net with a ResNet encoder: smp's ``Unet(encoder_name="resnetXX")`` from seglit parts.

    With the defaults this is layer for layer the network of segmentation-models-pytorch 0.6
    ``Unet(encoder_name=backbone, encoder_depth=5, decoder_channels=(256, 128, 64, 32, 16),
    decoder_use_batchnorm=True, decoder_attention_type=None)``: the same parameters (same
    count, same shapes in the same order) and the same forward computation, so smp's
    weights load into it and give the same logits. No smp code is used.

    * Encoder: :class:`~seglit.models.backbones.ResNetBackbone` at output stride 32
      (torchvision layout), exposed as ``backbone``. Skips come from the stem (stride 2,
      after conv1/bn1/relu, before the max pool), ``layer1`` (4), ``layer2`` (8) and
      ``layer3`` (16); ``layer4`` (32) feeds the decoder directly (no center block).
    * Decoder: five stages with ``decoder_channels`` outputs. Stage ``i`` resizes its input
      to the size of the next-shallower encoder feature (the input image's size for the
      last stage), concatenates that feature (no skip at the last stage) and applies two
      3x3 conv (no bias) + BN + ReLU. Resizing to the feature's exact size (not a fixed
      x2) makes any input size work, as in smp 0.6, without padding: the output has the
      input's H and W.
    * Head: a 3x3 conv (with bias) from ``decoder_channels[-1]`` to ``num_classes``.
    * Initialisation as smp: decoder convs Kaiming-uniform (fan in), head Xavier-uniform,
      zero biases; the encoder as torchvision's ResNet.

    Args:
        num_classes: Number of output classes.
        backbone: ``resnet18``, ``resnet34``, ``resnet50`` or ``resnet101``.
        pretrained: Load torchvision ImageNet weights into the encoder (from the hub cache).
        backbone_width: Encoder stem width (``None`` = 64, standard); small values give a
            tiny from-scratch encoder for tests. The decoder widths do not scale with it.
        decoder_channels: Output channels of the five decoder stages, deepest first.
        upsample: Decoder upsampling. ``nearest`` is smp's default (the equivalent
            network); ``bilinear`` interpolates bilinearly (``align_corners=False``), also
            parameter-free; ``transposed`` is a learned 2x2 stride-2 transposed conv keeping
            the channel count, so it adds ``4 c^2 + c`` parameters per stage (``c`` = that
            stage's input channels): 1,397,728 extra with resnet34, 17,127,904 with resnet50.
    """

    def __init__(
        self,
        num_classes: int,
        backbone: ResNetName = "resnet34",
        pretrained: bool = False,
        backbone_width: int | None = None,
        decoder_channels: Sequence[int] = (256, 128, 64, 32, 16),
        upsample: ResNetUNetUpsample = "nearest",
    ) -> None:
        super().__init__(num_classes)
        check_choice("upsample", upsample, ResNetUNetUpsample)
        decoder_channels = tuple(decoder_channels)
        if len(decoder_channels) != 5 or not all(
            isinstance(c, int) and not isinstance(c, bool) and c >= 1 for c in decoder_channels
        ):
            raise ValueError(
                f"invalid decoder_channels={decoder_channels!r}; expected 5 positive ints, "
                "one per decoder stage, deepest first, e.g. (256, 128, 64, 32, 16)"
            )
        self.output_stride = 32
        self.backbone = ResNetBackbone(
            backbone,
            output_stride=32,
            width=backbone_width,
            pretrained=pretrained,
            stem_feature=True,
        )
        ch = self.backbone.channels
        in_channels = [ch["out"], *decoder_channels[:-1]]
        skip_channels = [ch[k] for k in RESNET_UNET_SKIPS] + [0]
        self.decoder = nn.ModuleList(
            ResNetUNetBlock(c_in, c_skip, c_out, upsample)
            for c_in, c_skip, c_out in zip(in_channels, skip_channels, decoder_channels)
        )
        self.head = nn.Conv2d(decoder_channels[-1], num_classes, 3, padding=1)
        for m in self.decoder.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight, mode="fan_in", nonlinearity="relu")
        nn.init.xavier_uniform_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x: Tensor) -> Tensor:
        """Map (N, 3, H, W) to logits (N, num_classes, H, W), any H and W."""
        self.check_input(x)
        feats = self.backbone(x)
        sizes = [feats[k].shape[-2:] for k in RESNET_UNET_SKIPS] + [x.shape[-2:]]
        skips: list[Tensor | None] = [feats[k] for k in RESNET_UNET_SKIPS] + [None]
        y = feats["out"]
        for block, size, skip in zip(self.decoder, sizes, skips):
            y = block(y, size, skip)
        return self.head(y)
