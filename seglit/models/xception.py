"""Aligned Xception-65, DeepLab v3+'s backbone (Chen et al., ECCV 2018, Sec. 3.2).

The layers and state-dict keys are timm's ``xception65`` feature extractor; TF
research/deeplab's ``xception_65`` is the reference for strides, dilations and taps.
:func:`seglit.models.backbones.build_backbone` builds it for ``backbone="xception65"``
(``XceptionBackbone`` is importable from :mod:`seglit.models.backbones` too).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from torch import Tensor, nn

from seglit.models.knobs import OutputStride, check_choice, check_width

# (input channels, output channels of the three separable convs, stride) per block: the
# entry flow (3 blocks), the middle flow (16 identical blocks) and the exit flow (2 blocks)
# of TF research/deeplab's ``xception_65`` and timm's ``xception65``.
XCEPTION65_BLOCKS: tuple[tuple[int, tuple[int, int, int], int], ...] = (
    (64, (128, 128, 128), 2),
    (128, (256, 256, 256), 2),
    (256, (728, 728, 728), 2),
    *((728, (728, 728, 728), 1),) * 16,
    (728, (728, 1024, 1024), 2),
    (1024, (1536, 1536, 2048), 1),
)
XCEPTION_BN_EPS = 1e-3  # TF DeepLab's batch_norm_epsilon (timm uses the same)


class ConvBN(nn.Module):
    """Conv (no bias) + BN (+ ReLU): timm's ``ConvNormAct`` keys (``conv``, ``bn``)."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel_size: int, stride: int, act: bool
    ) -> None:
        super().__init__()
        padding = ((stride - 1) + (kernel_size - 1)) // 2
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding, bias=False)
        self.bn = nn.BatchNorm2d(out_channels, eps=XCEPTION_BN_EPS)
        self.act = nn.ReLU(inplace=True) if act else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.bn(self.conv(x)))


class XceptionSeparableConv(nn.Module):
    """Depthwise 3x3 (stride, dilation) + BN, pointwise 1x1 + BN; with ``act`` a ReLU after
    each BN (the exit flow's last block). timm's key layout (``conv_dw``, ``bn_dw``, ...)."""

    def __init__(
        self, in_channels: int, out_channels: int, stride: int, dilation: int, act: bool
    ) -> None:
        super().__init__()
        padding = ((stride - 1) + 2 * dilation) // 2
        self.conv_dw = nn.Conv2d(
            in_channels,
            in_channels,
            3,
            stride,
            padding,
            dilation=dilation,
            groups=in_channels,
            bias=False,
        )
        self.bn_dw = nn.BatchNorm2d(in_channels, eps=XCEPTION_BN_EPS)
        self.act_dw = nn.ReLU(inplace=True) if act else nn.Identity()
        self.conv_pw = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn_pw = nn.BatchNorm2d(out_channels, eps=XCEPTION_BN_EPS)
        self.act_pw = nn.ReLU(inplace=True) if act else nn.Identity()

    def forward(self, x: Tensor) -> Tensor:
        x = self.act_dw(self.bn_dw(self.conv_dw(x)))
        return self.act_pw(self.bn_pw(self.conv_pw(x)))


class XceptionBlock(nn.Module):
    """One Xception module: three separable convs (the last one strided) and a shortcut.

    Entry and middle flow blocks (``start_with_relu=True``) put a ReLU before each separable
    conv and add a shortcut (identity, or 1x1 conv + BN when the shape changes). The exit
    flow's last block has no shortcut and a ReLU after each BN instead (TF DeepLab's
    ``activation_fn_in_separable_conv``).

    Args:
        in_channels: Input channels.
        out_channels: Output channels of the three separable convs.
        stride: Stride of the third separable conv (and the shortcut).
        rates: Dilation of each separable conv.
        start_with_relu: Pre-activation form (entry/middle flow) or not (last block).
        skip: Add the shortcut.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: Sequence[int],
        stride: int,
        rates: Sequence[int],
        start_with_relu: bool = True,
        skip: bool = True,
    ) -> None:
        super().__init__()
        out_channels = tuple(out_channels)
        self.skip = skip
        self.shortcut: nn.Module | None = None
        if skip and (out_channels[-1] != in_channels or stride != 1):
            self.shortcut = ConvBN(in_channels, out_channels[-1], 1, stride, act=False)
        stack: dict[str, nn.Module] = {}
        c = in_channels
        for i in range(3):
            if start_with_relu:  # the first ReLU keeps its input (the shortcut reads it)
                stack[f"act{i + 1}"] = nn.ReLU(inplace=i > 0)
            stack[f"conv{i + 1}"] = XceptionSeparableConv(
                c, out_channels[i], stride if i == 2 else 1, rates[i], act=not start_with_relu
            )
            c = out_channels[i]
        self.stack = nn.Sequential(OrderedDict(stack))

    def forward(self, x: Tensor, tap: bool = False) -> Tensor | tuple[Tensor, Tensor]:
        """The block's output; with ``tap`` also the input of the last (strided) separable
        conv, the last feature map at the block's input stride (timm's feature taps)."""
        y = x
        layers = list(self.stack)
        for layer in layers[:-1]:
            y = layer(y)
        tapped = y
        y = layers[-1](y)
        if self.skip:
            y = y + (x if self.shortcut is None else self.shortcut(x))
        return (y, tapped) if tap else y


class XceptionBackbone(nn.Module):
    """Aligned Xception-65 (DeepLab v3+ paper, Sec. 3.2; TF research/deeplab ``xception_65``).

    Stem: 3x3 conv (32, stride 2) + BN + ReLU, 3x3 conv (64) + BN + ReLU. Entry flow: three
    blocks (128, 256, 728 channels), each ending in a stride-2 separable conv; middle flow:
    16 blocks of 728; exit flow: a block (728, 1024, 1024, stride 2) and a block without
    shortcut (1536, 1536, 2048). Every conv is a depthwise-separable 3x3 (depthwise + BN,
    pointwise + BN) except the stem and the 1x1 shortcuts. Output stride 16 turns the exit
    flow's stride into dilation 2 (for it and what follows); output stride 8 also the entry
    flow's last stride (the middle flow runs at dilation 2, the exit flow at 2 then 4), as
    TF DeepLab's ``output_stride`` does. ``multi_grid`` multiplies the rates of the last
    block's three separable convs (TF DeepLab applies it to ``exit_flow/block2``).

    The layers and state-dict keys are timm's ``xception65`` feature extractor (``stem.*``,
    ``blocks.0-20.*``; BN eps 1e-3), so timm's weights load into it; the parameter count is
    timm's (37,867,312; ``tests/models/test_paper_configs.py``). Features: ``"stride4"``
    (256 channels), ``"stride8"`` (728) and ``"stride16"`` (1024) are the inputs of the
    strided separable conv of entry blocks 2, 3 and exit block 1 (timm's taps, after the
    ReLU; TF DeepLab's v3+ decoder reads entry block 2's ``separable_conv2_pointwise``, the
    same map before that ReLU), ``"out"`` is the last block's output (2048).

    Args:
        output_stride: 8, 16 or 32.
        multi_grid: Unit rates of the last block's separable convs (``None`` = all 1).
        width: Stem's second conv width (64 standard); every width scales by ``width / 64``
            (a tiny from-scratch backbone for tests).
        pretrained: Refused: seglit ships no Xception weights (load timm's ``xception65``
            state dict without ``head.*`` into ``backbone`` yourself).
        early_features: Also return ``"stride2"``: entry block 1's tap (128 channels).
    """

    def __init__(
        self,
        output_stride: int = 32,
        multi_grid: Sequence[int] | None = None,
        width: int | None = None,
        pretrained: bool = False,
        early_features: bool = False,
    ) -> None:
        super().__init__()
        check_choice("output_stride", output_stride, OutputStride)
        check_width(width, pretrained)
        if pretrained:
            raise ValueError(
                "pretrained=True is not available for backbone 'xception65': seglit has no "
                "ImageNet weights for it. Its state-dict keys are timm's `xception65` "
                "features: load `timm.create_model('xception65', pretrained=True).state_dict()`"
                " (without `head.*`) into `model.backbone` yourself"
            )

        def ch(c: int) -> int:
            return c if width is None else max(1, round(c * width / 64))

        self.output_stride = output_stride
        self.early_features = early_features
        self.stem = nn.Sequential(
            ConvBN(3, ch(32), 3, 2, act=True), ConvBN(ch(32), ch(64), 3, 1, act=True)
        )
        blocks = []
        self._taps: dict[int, str] = {}
        self.channels: dict[str, int] = {}
        self.strides: dict[str, int] = {}
        stride, dilation = 2, 1
        last = len(XCEPTION65_BLOCKS) - 1
        for i, (c_in, c_out, s) in enumerate(XCEPTION65_BLOCKS):
            rates = [dilation] * 3
            if s > 1:  # timm's / TF's rule: a stride past the output stride becomes dilation
                key = {0: "stride2", 1: "stride4", 2: "stride8"}.get(i, "stride16")
                if key != "stride2" or early_features:
                    self._taps[i] = key
                    self.channels[key] = ch(c_out[1])
                    self.strides[key] = stride
                if stride * s > output_stride:
                    dilation *= s
                    s = 1
                else:
                    stride *= s
            if i == last and multi_grid is not None:
                rates = [dilation * multi_grid[j % len(multi_grid)] for j in range(3)]
            blocks.append(
                XceptionBlock(
                    ch(c_in),
                    [ch(c) for c in c_out],
                    s,
                    rates,
                    start_with_relu=i != last,
                    skip=i != last,
                )
            )
        self.blocks = nn.Sequential(*blocks)
        self.channels["out"] = ch(XCEPTION65_BLOCKS[-1][1][-1])
        self.strides["out"] = output_stride
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        x = self.stem(x)
        feats: dict[str, Tensor] = {}
        for i, block in enumerate(self.blocks):
            key = self._taps.get(i)
            if key is None:
                x = block(x)
            else:
                x, feats[key] = block(x, tap=True)
        feats["out"] = x
        return feats
