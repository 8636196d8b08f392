"""Heads shared by the families: torchvision-style FCN head (also the auxiliary head)."""

from __future__ import annotations

from torch import nn


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
