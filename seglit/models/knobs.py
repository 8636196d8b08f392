"""The knob vocabularies of the model zoo, each defined once.

Every knob that takes one of a fixed set of values is a ``Literal`` type here. Model
signatures use these types (so the Lightning CLI rejects a bad value with the key's name
before anything is built), :func:`check_choice` validates them where a knob is consumed, and
``docs/models.md`` lists them from :func:`choices`.
:func:`check_width` checks the ``backbone_width`` knob of every backbone.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, get_args

ResNetName = Literal["resnet18", "resnet34", "resnet50", "resnet101"]
"""torchvision-layout ResNets (``seglit.models.backbones.ResNetBackbone``)."""

BackboneName = Literal["vgg16", "resnet18", "resnet34", "resnet50", "resnet101", "xception65"]
"""Every backbone :func:`seglit.models.backbones.build_backbone` builds."""

DeepLabV3BackboneName = Literal["resnet18", "resnet34", "resnet50", "resnet101", "xception65"]
"""Backbones of DeepLab v3 / v3+: the dilated ResNets and aligned Xception-65 (v3+ paper)."""

OutputStride = Literal[8, 16, 32]
"""Ratio of input size to the backbone's last feature map (dilation replaces strides)."""

UpsampleMode = Literal["transposed", "bilinear", "nearest_conv", "bilinear_conv"]
"""How a decoder goes up in resolution (:class:`seglit.models.blocks.Upsample`)."""

FusionMode = Literal["sum", "concat"]
"""How a skip connection is merged (:class:`seglit.models.blocks.Fuse`)."""

DropoutKind = Literal["element", "channel"]
"""``element``: ``nn.Dropout`` (caffe's and torchvision's VGG: single activations dropped);
``channel``: ``nn.Dropout2d`` (whole feature maps dropped)."""


def choices(knob: object) -> tuple[object, ...]:
    """The values of a ``Literal`` knob type (a tuple or list is returned as a tuple)."""
    if isinstance(knob, (list, tuple)):
        return tuple(knob)
    return tuple(get_args(knob))


def check_choice(name: str, value: object, knob: object | Sequence[object]) -> None:
    """Raise a ValueError naming the knob and its valid values if ``value`` is not allowed.

    Args:
        name: Knob name, e.g. ``"fusion"``.
        value: The value given.
        knob: A ``Literal`` type from this module, or a sequence of valid values.
    """
    valid = choices(knob)
    if value not in valid:
        raise ValueError(
            f"invalid {name}={value!r}; expected one of: {', '.join(repr(c) for c in valid)}"
        )


def check_width(backbone_width: int | None, pretrained: bool) -> None:
    """Reject pretrained weights for a scaled-down backbone."""
    if backbone_width is not None and pretrained:
        raise ValueError(
            f"pretrained=True needs the standard widths; got backbone_width={backbone_width} "
            "(use backbone_width=None, or pretrained=False for a tiny from-scratch backbone)"
        )
    if backbone_width is not None and backbone_width < 1:
        raise ValueError(f"invalid backbone_width={backbone_width}; expected an int >= 1")
