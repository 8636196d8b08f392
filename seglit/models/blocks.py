"""Small building blocks shared by the model families.

Upsampling (learned transposed convolution, fixed interpolation, resize + conv), fusion of
two feature maps (sum or concat) and depthwise-separable convolutions.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seglit.models.knobs import FusionMode, UpsampleMode, check_choice


def align_to(x: Tensor, size: Sequence[int]) -> Tensor:
    """Crop or zero-pad ``x`` at the bottom/right so its spatial size equals ``size``.

    Pixel (0, 0) stays aligned with pixel (0, 0) of the reference, which is where our
    "same"-padded, ceil-mode encoders put it.
    """
    h, w = int(size[0]), int(size[1])
    dh, dw = h - x.shape[-2], w - x.shape[-1]
    if dh == 0 and dw == 0:
        return x
    if dh < 0 or dw < 0:
        x = x[..., : min(h, x.shape[-2]), : min(w, x.shape[-1])]
        dh, dw = h - x.shape[-2], w - x.shape[-1]
    if dh > 0 or dw > 0:
        x = F.pad(x, (0, dw, 0, dh))
    return x


def bilinear_kernel(channels: int, kernel_size: int) -> Tensor:
    """Weights of a transposed convolution that performs bilinear upsampling (FCN's init).

    The filter is applied per channel (a diagonal weight of shape (C, C, k, k)): with
    ``kernel_size = 2 * stride`` and ``padding = stride // 2`` it reproduces
    ``F.interpolate(mode="bilinear", align_corners=False)`` away from the borders.
    """
    factor = (kernel_size + 1) // 2
    center = factor - 1 if kernel_size % 2 == 1 else factor - 0.5
    og = torch.arange(kernel_size, dtype=torch.float64)
    filt1d = 1 - (og - center).abs() / factor
    filt = filt1d[:, None] * filt1d[None, :]
    weight = torch.zeros(channels, channels, kernel_size, kernel_size, dtype=torch.float64)
    weight[range(channels), range(channels)] = filt
    return weight.float()


def scaled_length(length: int, scale: float, align_corners: bool = False) -> int:
    """The length of a side of ``length`` pixels resized by ``scale``.

    ``length * scale`` rounded half up (at least 1) by default, as mmcv's ``rescale_size``
    (Python's ``round`` would take 375 * 1.5 to 562, mmseg's test-time scale to 563);
    corner-aligned,
    ``int((length - 1) * scale + 0.5) + 1``: the size caffe's ``Interp`` and TF DeepLab's
    ``scale_dimension`` give, which keeps the sizes ``s * k + 1`` (321 -> 241 and 161 at 0.75
    and 0.5), so that the corner-aligned resize maps pixel ``u`` to ``u / scale``.
    """
    if align_corners:
        return int((length - 1) * scale + 0.5) + 1
    return max(1, int(length * scale + 0.5))


def scaled_width(channels: int, backbone_width: int | None) -> int:
    """A head's width scaled like a scaled-down backbone (by ``backbone_width / 64``).

    Args:
        channels: The standard width.
        backbone_width: The backbone's first-stage width; ``None`` = standard (64).

    Returns:
        ``channels``, or ``channels * backbone_width // 64`` (at least 1).
    """
    return channels if backbone_width is None else max(1, channels * backbone_width // 64)


def transposed_output_size(i: int, stride: int, padding: int, kernel_size: int) -> int:
    """Output length of a transposed convolution: ``(i - 1) * s - 2p + k``."""
    return (i - 1) * stride - 2 * padding + kernel_size


class Upsample(nn.Module):
    """Upsample a feature map to a target size, with one of four methods.

    * ``transposed``: learned ``ConvTranspose2d`` (kernel ``kernel_size``, default
      ``2 * scale``, ``2 * scale - 1`` for odd scales; stride ``scale``; padding
      ``(kernel_size - scale) // 2``), optionally initialised to bilinear interpolation as
      in FCN; the result is cropped/padded to the target size (see :func:`align_to`).
    * ``bilinear``: fixed bilinear interpolation (``align_corners=False`` unless
      ``align_corners``); a 1x1 conv first if the channel count changes (1x1 conv and
      interpolation commute).
    * ``nearest_conv`` / ``bilinear_conv``: resize, then a 3x3 conv (Odena et al. 2016's
      remedy for checkerboard artifacts).

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        scale: Nominal upsampling factor (the stride of the transposed conv).
        mode: Upsampling method.
        kernel_size: Transposed-conv kernel; ``None`` means ``2 * scale`` (minus 1 if odd).
        bilinear_init: Initialise the transposed conv to bilinear interpolation (requires
            ``in_channels == out_channels``); it then has no bias, like FCN's.
        align_corners: Corner-aligned bilinear resizes (``bilinear`` and ``bilinear_conv``):
            the first and last samples of input and output coincide, as caffe's ``Interp``
            and TF DeepLab resize, so coarse cell ``i`` of a stride-``s`` map stays at input
            pixel ``s * i`` (exactly for sizes ``s * k + 1``, see :func:`scaled_length`).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        scale: int,
        mode: UpsampleMode = "transposed",
        kernel_size: int | None = None,
        bilinear_init: bool = False,
        align_corners: bool = False,
    ) -> None:
        super().__init__()
        check_choice("upsample", mode, UpsampleMode)
        self.mode = mode
        self.scale = scale
        self.align_corners = align_corners
        self.proj: nn.Module | None = None
        self.conv: nn.Module | None = None
        if scale == 1 and in_channels == out_channels:
            self.mode = "bilinear"  # nothing to learn: at most a crop/pad-sized resize
        elif mode == "transposed":
            k = 2 * scale - scale % 2 if kernel_size is None else kernel_size
            use_bilinear = bilinear_init and in_channels == out_channels
            self.conv = nn.ConvTranspose2d(
                in_channels,
                out_channels,
                kernel_size=k,
                stride=scale,
                padding=max(k - scale, 0) // 2,
                bias=not use_bilinear,
            )
            if use_bilinear:
                with torch.no_grad():
                    self.conv.weight.copy_(bilinear_kernel(in_channels, k))
        elif mode == "bilinear":
            if in_channels != out_channels:
                self.proj = nn.Conv2d(in_channels, out_channels, 1)
        else:
            self.conv = nn.Conv2d(in_channels, out_channels, 3, padding=1)

    def forward(self, x: Tensor, size: Sequence[int]) -> Tensor:
        """Upsample ``x`` to spatial ``size`` (H, W)."""
        size = (int(size[0]), int(size[1]))
        if self.mode == "transposed":
            return align_to(self.conv(x), size)
        if self.mode == "bilinear":
            if self.proj is not None:
                x = self.proj(x)
            if tuple(x.shape[-2:]) == size:
                return x
            return F.interpolate(x, size=size, mode="bilinear", align_corners=self.align_corners)
        interp = "nearest" if self.mode == "nearest_conv" else "bilinear"
        if tuple(x.shape[-2:]) != size:
            kwargs = {"align_corners": self.align_corners} if interp == "bilinear" else {}
            x = F.interpolate(x, size=size, mode=interp, **kwargs)
        return self.conv(x)


class Fuse(nn.Module):
    """Fuse two maps of equal shape (N, C, H, W) by sum or by concatenation + 1x1 conv.

    For ``concat`` the 2C channels are reduced back to C by a 1x1 conv initialised to
    ``[I, I]`` (plus zero bias), so at initialisation concat computes exactly the sum and
    the two variants differ only in the extra freedom concat gets while training.

    Args:
        channels: Channels C of each input.
        mode: ``sum`` or ``concat``.
    """

    def __init__(self, channels: int, mode: FusionMode = "sum") -> None:
        super().__init__()
        check_choice("fusion", mode, FusionMode)
        self.mode = mode
        self.reduce: nn.Conv2d | None = None
        if mode == "concat":
            self.reduce = nn.Conv2d(2 * channels, channels, 1)
            with torch.no_grad():
                eye = torch.eye(channels)[:, :, None, None]
                self.reduce.weight.copy_(torch.cat([eye, eye], dim=1))
                self.reduce.bias.zero_()

    def forward(self, a: Tensor, b: Tensor) -> Tensor:
        """Fuse ``a`` and ``b``."""
        if self.reduce is None:
            return a + b
        return self.reduce(torch.cat([a, b], dim=1))


def conv_bn_relu(
    in_channels: int,
    out_channels: int,
    kernel_size: int = 3,
    dilation: int = 1,
    batch_norm: bool = True,
) -> nn.Sequential:
    """Conv (same padding) + optional BatchNorm + ReLU."""
    layers: list[nn.Module] = [
        nn.Conv2d(
            in_channels,
            out_channels,
            kernel_size,
            padding=dilation * (kernel_size - 1) // 2,
            dilation=dilation,
            bias=not batch_norm,
        )
    ]
    if batch_norm:
        layers.append(nn.BatchNorm2d(out_channels))
    layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class SeparableConv2d(nn.Sequential):
    """Atrous depthwise-separable conv as in DeepLab v3+.

    Depthwise 3x3 (dilated) + BN + ReLU, then pointwise 1x1 + BN + ReLU: the Xception /
    TF DeepLab / mmseg form. With ``depthwise_bn=False`` the depthwise and pointwise convs
    run back to back and only the pointwise output is normalised (smp's form: one BN + ReLU
    less, so fewer activations kept for backward). Parameters:
    ``9 C_in + C_in C_out`` convolution weights instead of ``9 C_in C_out``.

    Args:
        in_channels: Input channels.
        out_channels: Output channels.
        dilation: Atrous rate of the depthwise conv.
        depthwise_bn: BN + ReLU after the depthwise conv.
    """

    def __init__(
        self, in_channels: int, out_channels: int, dilation: int = 1, depthwise_bn: bool = True
    ) -> None:
        depthwise = nn.Conv2d(
            in_channels,
            in_channels,
            3,
            padding=dilation,
            dilation=dilation,
            groups=in_channels,
            bias=False,
        )
        inner = [nn.BatchNorm2d(in_channels), nn.ReLU(inplace=True)] if depthwise_bn else []
        super().__init__(
            depthwise,
            *inner,
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )
