"""Heads shared by the families: torchvision-style FCN head (also the auxiliary head)."""

from __future__ import annotations

from torch import nn


class FCNHead(nn.Sequential):
    """3x3 conv (C_in -> C_in / 4) + BN + ReLU + Dropout(0.1) + 1x1 conv to classes.

    Same layout and state-dict keys as torchvision's ``FCNHead``; used as the FCN ``head="fcn"``
    classifier and as the auxiliary head on an intermediate stage.
    """

    def __init__(self, in_channels: int, num_classes: int) -> None:
        inter = max(1, in_channels // 4)
        super().__init__(
            nn.Conv2d(in_channels, inter, 3, padding=1, bias=False),
            nn.BatchNorm2d(inter),
            nn.ReLU(inplace=True),
            nn.Dropout(0.1),
            nn.Conv2d(inter, num_classes, 1),
        )
