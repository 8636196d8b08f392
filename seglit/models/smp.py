"""segmentation-models-pytorch wrapper with seglit's model contract."""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor, nn

from seglit.models.base import SegmentationModel
from seglit.models.knobs import check_choice
from seglit.models.registry import register_model

MIN_SIDE = {"pan": 8}
"""The smallest side, in multiples of the encoder's output stride, an smp architecture's
deepest map must have, where it is more than 1: PAN's feature pyramid attention pools that
map three more times (7x7, 5x5, 3x3 convs at strides 2), which needs 8 or more (128 px at
stride 16)."""


def smp_architectures() -> list[str]:
    """Architecture names accepted by ``SMPModel(arch=...)`` (case-insensitive)."""
    import segmentation_models_pytorch as smp

    return sorted(smp.MODEL_ARCHITECTURES_MAPPING)


@register_model(
    "smp",
    tiny={
        "arch": "Unet",
        "encoder": "resnet18",  # few modules: fast to build, trace and export
        "smp_kwargs": {"decoder_channels": [16, 8, 8, 4, 4]},
    },
)
class SMPModel(SegmentationModel):
    """Any smp architecture and encoder by name, mapping (N, 3, H, W) to (N, C, H, W).

    Inputs of any size are zero-padded at the bottom/right to a multiple of the encoder's
    output stride (PAN: and to at least 8 strides, see :data:`MIN_SIDE`) and the logits cropped
    back. The encoder is exposed as ``backbone``.

    Args:
        num_classes: Number of classes.
        arch: smp architecture, e.g. ``Unet``, ``FPN``, ``DeepLabV3Plus`` (case-insensitive).
        encoder: smp encoder name, e.g. ``resnet34``, ``efficientnet-b0``, ``tu-<timm name>``.
        encoder_weights: smp pretrained weights (``imagenet``, ...); ``None`` (default) for
            random init. smp downloads weights from the internet if they are not cached.
        smp_kwargs: Extra keyword arguments for ``smp.create_model`` (e.g.
            ``{"encoder_depth": 4, "decoder_channels": [128, 64, 32, 16]}``).
    """

    def __init__(
        self,
        num_classes: int,
        arch: str = "Unet",
        encoder: str = "resnet34",
        encoder_weights: str | None = None,
        smp_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(num_classes)
        import segmentation_models_pytorch as smp

        check_choice("arch", arch.lower(), smp_architectures())
        encoders = smp.encoders.get_encoder_names()
        if not encoder.startswith("tu-"):
            check_choice("encoder", encoder, encoders)
        self.model = smp.create_model(
            arch,
            encoder_name=encoder,
            encoder_weights=encoder_weights,
            in_channels=3,
            classes=num_classes,
            **(smp_kwargs or {}),
        )
        self.output_stride = int(getattr(self.model.encoder, "output_stride", 32))
        self.min_side = MIN_SIDE.get(arch.lower(), 1) * self.output_stride

    @property
    def backbone(self) -> nn.Module:
        """The smp encoder (the pretrained part)."""
        return self.model.encoder

    def forward(self, x: Tensor) -> Tensor:
        """Map (N, 3, H, W) to logits (N, C, H, W)."""
        self.check_input(x)
        h, w = x.shape[-2:]
        s = self.output_stride
        ph, pw = (-h) % s, (-w) % s
        if self.min_side > s:
            ph, pw = max(ph, self.min_side - h), max(pw, self.min_side - w)
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph))
        return self.model(x)[..., :h, :w]
