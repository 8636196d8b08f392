"""Heads shared by the families: torchvision-style FCN head (also the auxiliary head), and
DeepLab v3's ASPP and head in its three published layouts (also v3+'s encoder)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seglit.models.blocks import SeparableConv2d, conv_bn_relu
from seglit.models.knobs import check_choice

V3Head = Literal["paper", "torchvision", "mmseg"]
"""DeepLab v3 heads: the paper's, torchvision's ``DeepLabHead``, mmseg's ``ASPPHead``."""


class FCNHead(nn.Sequential):
    """3x3 conv (C_in -> channels) + BN + ReLU + Dropout(0.1) + 1x1 conv to classes.

    With the defaults (``channels = C_in / 4``, element dropout) the layout and state-dict
    keys are torchvision's ``FCNHead``; used as the FCN ``head="fcn"`` classifier and as the
    auxiliary head on an intermediate stage. mmseg's ``FCNHead(num_convs=1,
    concat_input=False)`` is the same layers with its ``channels`` and ``Dropout2d``
    (``channel_dropout=True``), e.g. its DeepLab auxiliary head (1024 -> 256) and the
    U-Net heads (64 -> 64, 128 -> 64).

    Args:
        in_channels: Input channels.
        num_classes: Output classes.
        channels: Width of the 3x3 conv (``None`` = ``in_channels // 4``, torchvision's).
        channel_dropout: ``nn.Dropout2d`` (mmseg) instead of ``nn.Dropout`` (torchvision).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        channels: int | None = None,
        channel_dropout: bool = False,
    ) -> None:
        inter = max(1, in_channels // 4) if channels is None else channels
        super().__init__(
            nn.Conv2d(in_channels, inter, 3, padding=1, bias=False),
            nn.BatchNorm2d(inter),
            nn.ReLU(inplace=True),
            nn.Dropout2d(0.1) if channel_dropout else nn.Dropout(0.1),
            nn.Conv2d(inter, num_classes, 1),
        )


class ASPPPooling(nn.Sequential):
    """Image-level features: global average pool + 1x1 conv + BN + ReLU, broadcast back."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: Tensor) -> Tensor:
        size = x.shape[-2:]
        for mod in self:
            x = mod(x)
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    """DeepLab v3 ASPP: 1x1 branch, one 3x3 branch per rate, optional image pooling;
    **concatenated** and projected by a ``project_kernel`` conv + BN + ReLU (+ dropout).

    Layout and state-dict keys match torchvision's ``ASPP`` (``convs.i``, ``project``) with
    the defaults (1x1 projection, ``Dropout(0.5)``). The paper / TF DeepLab project with a
    1x1 conv and drop 10% (``dropout=0.1``); mmseg's ``ASPPHead`` / v3+ head projects with
    a 3x3 conv and no dropout (``project_kernel=3, dropout=0``). The branch order (image
    pooling last) is torchvision's; TF DeepLab and mmseg put it first, which only permutes
    the projection's input channels.

    Args:
        in_channels: Backbone channels.
        atrous_rates: Rates of the 3x3 branches.
        out_channels: Channels of every branch and of the output.
        image_pooling: Add the image-level pooling branch.
        separable: Use atrous depthwise-separable convs for the 3x3 branches (v3+).
        depthwise_bn: BN + ReLU after each depthwise conv (see :class:`SeparableConv2d`).
        project_kernel: Kernel of the projection after the concatenation (1 or 3).
        dropout: Element-wise dropout after the projection (0 = none).
    """

    def __init__(
        self,
        in_channels: int,
        atrous_rates: Sequence[int],
        out_channels: int = 256,
        image_pooling: bool = True,
        separable: bool = False,
        depthwise_bn: bool = True,
        project_kernel: int = 1,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        convs: list[nn.Module] = [conv_bn_relu(in_channels, out_channels, 1)]
        for r in atrous_rates:
            if separable:
                convs.append(SeparableConv2d(in_channels, out_channels, r, depthwise_bn))
            else:
                convs.append(conv_bn_relu(in_channels, out_channels, 3, dilation=r))
        if image_pooling:
            convs.append(ASPPPooling(in_channels, out_channels))
        self.convs = nn.ModuleList(convs)
        project: list[nn.Module] = [
            nn.Conv2d(
                len(convs) * out_channels,
                out_channels,
                project_kernel,
                padding=project_kernel // 2,
                bias=False,
            ),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        ]
        if dropout > 0:
            project.append(nn.Dropout(dropout))
        self.project = nn.Sequential(*project)

    def forward(self, x: Tensor) -> Tensor:
        return self.project(torch.cat([conv(x) for conv in self.convs], dim=1))


class DeepLabHead(nn.Sequential):
    """The v3 head after the backbone, in one of three published layouts:

    * ``paper`` (DeepLab v3 Sec. 3.3, TF DeepLab): ASPP concat -> 1x1 projection (256, BN,
      ReLU) -> dropout 0.1 (TF DeepLab's ``keep_prob=0.9``) -> 1x1 conv to classes.
    * ``torchvision`` (``DeepLabHead``): ASPP with ``Dropout(0.5)``, then an extra 3x3 conv
      + BN + ReLU, then the 1x1 classifier; torchvision's state-dict keys.
    * ``mmseg`` (``ASPPHead``): ASPP concat -> **3x3** projection + BN + ReLU ->
      ``Dropout2d(0.1)`` -> 1x1 classifier.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        atrous_rates: Sequence[int],
        channels: int = 256,
        image_pooling: bool = True,
        separable: bool = False,
        layout: str = "torchvision",
    ) -> None:
        check_choice("head", layout, V3Head)
        if layout == "torchvision":
            super().__init__(
                ASPP(in_channels, atrous_rates, channels, image_pooling, separable),
                nn.Conv2d(channels, channels, 3, padding=1, bias=False),
                nn.BatchNorm2d(channels),
                nn.ReLU(inplace=True),
                nn.Conv2d(channels, num_classes, 1),
            )
        elif layout == "paper":
            super().__init__(
                ASPP(in_channels, atrous_rates, channels, image_pooling, separable, dropout=0.1),
                nn.Conv2d(channels, num_classes, 1),
            )
        else:
            super().__init__(
                ASPP(
                    in_channels,
                    atrous_rates,
                    channels,
                    image_pooling,
                    separable,
                    project_kernel=3,
                    dropout=0.0,
                ),
                nn.Dropout2d(0.1),
                nn.Conv2d(channels, num_classes, 1),
            )
