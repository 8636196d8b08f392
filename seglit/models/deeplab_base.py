"""What the DeepLab models of :mod:`seglit.models.deeplab` share.

The forward (backbone -> logits -> upsampling to the input, the auxiliary head, DeepLab v2's
multi-scale inputs), the backbone of v1/v2, the encoder of v3/v3+ (backbone, ASPP rates and
width), and the checks of the knobs they have in common. The resizes' geometry
(``align_corners``) is described in :mod:`seglit.models.deeplab`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from seglit.models.backbones import build_backbone
from seglit.models.base import SegmentationModel
from seglit.models.blocks import Upsample, scaled_length, scaled_width
from seglit.models.heads import FCNHead
from seglit.models.knobs import DeepLabV3BackboneName, DropoutKind, check_choice


def _check_rates(name: str, rates: Sequence[int] | None) -> None:
    if rates is None:
        return
    if len(rates) == 0 or not all(isinstance(r, int) and r >= 1 for r in rates):
        raise ValueError(f"invalid {name}={rates!r}; expected a non-empty list of ints >= 1")


def _check_scales(scales: Sequence[float] | None) -> tuple[float, ...] | None:
    if scales is None:
        return None
    ok = len(scales) > 0 and all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in scales
    )
    if not ok:
        raise ValueError(
            f"invalid msc_scales={scales!r}; expected a non-empty list of positive scales, "
            "e.g. [1.0, 0.75, 0.5] (DeepLab v2's MSC), or null"
        )
    return tuple(float(v) for v in scales)


def _check_aux_stages(aux: bool, backbone_stages: int) -> None:
    """The aux head reads ``layer3`` (``stride16``), which needs three backbone stages."""
    if aux and backbone_stages < 3:
        raise ValueError(
            f"aux=True reads layer3, which backbone_stages={backbone_stages} leaves out; "
            "use aux=False or backbone_stages >= 3"
        )


def _v12_backbone(
    name: str,
    output_stride: int,
    pretrained: bool,
    backbone_width: int | None,
    fc_dropout: str,
) -> nn.Module:
    """DeepLab v1/v2's backbone: VGG16 with 3x3 pools and without fc6/fc7 (the models add
    their own fc branches, dropout ``fc_dropout``), or a ResNet / Xception-65."""
    check_choice("fc_dropout", fc_dropout, DropoutKind)
    return build_backbone(
        name, output_stride, pretrained, backbone_width, vgg_fc=False, vgg_pool="3x3"
    )


class _DeepLabBase(SegmentationModel):
    """Common forward: backbone -> ``_logits`` -> upsample to input (+ aux head), and
    DeepLab v2's multi-scale input fusion (``msc_scales``)."""

    up_final: Upsample
    aux_classifier: nn.Module | None
    msc_scales: tuple[float, ...] | None = None

    def _logits(self, feats: dict[str, Tensor]) -> Tensor:
        raise NotImplementedError

    def _init_common(
        self,
        num_classes: int,
        upsample: str,
        aux: bool,
        aux_key: str = "stride16",
        final_scale: int = 0,
        msc_scales: Sequence[float] | None = None,
        aux_channel_dropout: bool = False,
        align_corners: bool = False,
    ) -> None:
        """Final upsampling (by ``final_scale``; 0 = the output stride), the aux head
        (torchvision's ``FCNHead``; with ``aux_channel_dropout`` mmseg's, ``Dropout2d``),
        the multi-scale inputs and the geometry of every resize (``align_corners``)."""
        self.output_stride = self.backbone.output_stride
        self.align_corners = align_corners
        scale = final_scale or self.output_stride
        self.up_final = Upsample(
            num_classes,
            num_classes,
            scale,
            upsample,
            bilinear_init=True,
            align_corners=align_corners,
        )
        self._aux_key = aux_key
        self.aux_classifier = (
            FCNHead(
                self.backbone.channels[aux_key], num_classes, channel_dropout=aux_channel_dropout
            )
            if aux
            else None
        )
        self.msc_scales = _check_scales(msc_scales)
        if self.msc_scales is not None and aux:
            raise ValueError(
                "invalid msc_scales together with aux=True: both supervise through the "
                "'aux' output; use one of them"
            )

    def forward(self, x: Tensor) -> Tensor | dict[str, Tensor | list[Tensor]]:
        """Map (N, 3, H, W) to logits (N, C, H, W); ``{"out", "aux"}`` when training with aux
        (``aux`` is the list of per-scale logits with ``msc_scales``)."""
        self.check_input(x)
        size = x.shape[-2:]
        if self.msc_scales is not None:
            return self._forward_msc(x)
        feats = self.backbone(x)
        out = self.up_final(self._logits(feats), size)
        if self.aux_classifier is not None and self.training:
            aux = self.aux_classifier(feats[self._aux_key])
            aux = self._resize(aux, size)
            return {"out": out, "aux": aux}
        return out

    def _resize(self, x: Tensor, size: Sequence[int]) -> Tensor:
        """Bilinear resize with the network's geometry (``align_corners``)."""
        return F.interpolate(x, size=size, mode="bilinear", align_corners=self.align_corners)

    def msc_branches(self, x: Tensor) -> tuple[list[Tensor], list[Tensor]]:
        """DeepLab v2's MSC branches: each scale's logits, and the same brought to the grid
        of the largest scale's logits (bilinear), the inputs of the max fusion."""
        size = x.shape[-2:]
        scales = self.msc_scales or ()
        logits = []
        for s in scales:
            xs = x
            if s != 1.0:
                hw = [scaled_length(d, s, self.align_corners) for d in size]
                xs = self._resize(x, hw)
            logits.append(self._logits(self.backbone(xs)))
        # The largest scale by its value, not by comparing sizes: torch.export traces H and W
        # symbolically and cannot order them.
        largest = max(range(len(scales)), key=lambda i: scales[i])
        common = logits[largest].shape[-2:]
        resized = [t if i == largest else self._resize(t, common) for i, t in enumerate(logits)]
        return logits, resized

    def _forward_msc(self, x: Tensor) -> Tensor | dict[str, Tensor | list[Tensor]]:
        """DeepLab v2's MSC: run the network on the input resized by each scale, bring every
        scale's logits to the size of the largest scale's (bilinear) and fuse them by
        element-wise max. Training also returns each scale's logits (upsampled to the
        input size) as ``aux`` so that every scale is supervised, as in the paper."""
        size = x.shape[-2:]
        logits, resized = self.msc_branches(x)
        fused = torch.stack(resized).amax(0) if len(resized) > 1 else resized[0]
        out = self.up_final(fused, size)
        if not self.training:
            return out
        return {"out": out, "aux": [self._resize(t, size) for t in logits]}


def _v3_rates(atrous_rates: Sequence[int] | None, output_stride: int) -> tuple[int, ...]:
    """(6, 12, 18) at output stride 16, scaled by 16 / output_stride otherwise."""
    if atrous_rates is not None:
        return tuple(atrous_rates)
    return tuple(max(1, r * 16 // output_stride) for r in (6, 12, 18))


class _DeepLabV3Base(_DeepLabBase):
    """DeepLab v3 and v3+: :class:`_DeepLabBase` plus the encoder the two share, a dilated
    ResNet or Xception-65 read by an ASPP."""

    def _init_encoder(
        self,
        backbone: str,
        output_stride: int,
        pretrained: bool,
        backbone_width: int | None,
        atrous_rates: Sequence[int] | None,
        multi_grid: Sequence[int] | None,
        aux: bool,
        backbone_stages: int,
        aspp_channels: int | None,
    ) -> tuple[tuple[int, ...], int]:
        """Check the knobs v3 and v3+ share and build ``self.backbone``.

        Returns:
            The ASPP's rates (``atrous_rates``, or (6, 12, 18) scaled to the output stride)
            and width (``aspp_channels``, or 256 scaled with ``backbone_width``).
        """
        check_choice("backbone", backbone, DeepLabV3BackboneName)
        _check_rates("atrous_rates", atrous_rates)
        _check_rates("multi_grid", multi_grid)
        _check_aux_stages(aux, backbone_stages)
        self.backbone = build_backbone(
            backbone,
            output_stride,
            pretrained,
            backbone_width,
            multi_grid=multi_grid,
            stages=backbone_stages,
        )
        width = aspp_channels or scaled_width(256, backbone_width)
        return _v3_rates(atrous_rates, output_stride), width
