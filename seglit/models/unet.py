"""U-Net (Ronneberger et al. 2015) with configurable depth, width, skip fusion and upsampling.

Odd input sizes: the encoder uses "same" padded 3x3 convs and 2x2 max pooling (floor), so a
level of size ``s`` becomes ``floor(s / 2)``; the 2x upsampled map then has ``s`` or ``s - 1``
pixels. Before fusing, the upsampled map is zero-padded at the bottom/right to the skip's
size (:func:`seglit.models.blocks.align_to`); the skip is never cropped, so the output has the
input's H and W for any size (99x101, 375x500, ...).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from seglit.models.blocks import Upsample, check_choice, check_input

FUSIONS = ("sum", "concat")
UPSAMPLES = ("transposed", "bilinear", "nearest_conv", "bilinear_conv")


def double_conv(in_channels: int, out_channels: int, batch_norm: bool) -> nn.Sequential:
    """Two 3x3 convs (same padding), each followed by optional BN and ReLU."""
    layers: list[nn.Module] = []
    for c_in in (in_channels, out_channels):
        layers.append(nn.Conv2d(c_in, out_channels, 3, padding=1, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm2d(out_channels))
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class UNet(nn.Module):
    """U-Net for semantic segmentation.

    Level ``i`` (0-based) has ``base_width * 2**i`` channels; ``depth`` levels means
    ``depth - 1`` poolings (the paper's U-Net is ``base_width=64, depth=5``, ~31M params).

    Skip fusion: every decoder stage first upsamples the deeper map *to the skip's channel
    count*. ``concat`` then concatenates (2C channels) and the double conv reduces 2C -> C;
    ``sum`` adds (C channels) and the double conv maps C -> C. Both variants see the same
    information with the same widths; they differ only in the first conv of each stage.

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
    """

    def __init__(
        self,
        num_classes: int,
        in_channels: int = 3,
        base_width: int = 64,
        depth: int = 5,
        fusion: Literal["sum", "concat"] = "concat",
        upsample: Literal["transposed", "bilinear", "nearest_conv", "bilinear_conv"] = (
            "transposed"
        ),
        batch_norm: bool = True,
        upsample_kernel: int = 2,
    ) -> None:
        super().__init__()
        check_choice("fusion", fusion, FUSIONS)
        check_choice("upsample", upsample, UPSAMPLES)
        if upsample_kernel < 2:
            raise ValueError(f"invalid upsample_kernel={upsample_kernel!r}; expected an int >= 2")
        if depth < 2:
            raise ValueError(f"invalid depth={depth!r}; expected an int >= 2")
        if num_classes < 1 or base_width < 1 or in_channels < 1:
            raise ValueError(
                "num_classes, base_width and in_channels must be >= 1, got "
                f"{num_classes}, {base_width}, {in_channels}"
            )
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.depth = depth
        self.fusion = fusion
        self.output_stride = 2 ** (depth - 1)
        widths = [base_width * 2**i for i in range(depth)]

        self.encoder = nn.ModuleList([double_conv(in_channels, widths[0], batch_norm)])
        for i in range(1, depth):
            self.encoder.append(double_conv(widths[i - 1], widths[i], batch_norm))
        self.pool = nn.MaxPool2d(2)

        self.ups = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for i in reversed(range(depth - 1)):
            kernel = upsample_kernel if upsample == "transposed" else None
            self.ups.append(Upsample(widths[i + 1], widths[i], 2, upsample, kernel_size=kernel))
            fused = 2 * widths[i] if fusion == "concat" else widths[i]
            self.decoder.append(double_conv(fused, widths[i], batch_norm))
        self.head = nn.Conv2d(widths[0], num_classes, 1)

    def forward(self, x: Tensor) -> Tensor:
        """Map (N, in_channels, H, W) to logits (N, num_classes, H, W)."""
        check_input(x, self.in_channels)
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
        for up, block in zip(self.ups, self.decoder):
            skip = skips.pop()
            x = up(x, skip.shape[-2:])
            x = torch.cat([x, skip], dim=1) if self.fusion == "concat" else x + skip
            x = block(x)
        return self.head(x)
