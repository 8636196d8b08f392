"""The model contract every seglit model follows, stated once and checked.

A seglit model is an ``nn.Module`` that

* maps a float batch ``(N, in_channels, H, W)`` of any ``H, W`` to logits
  ``(N, num_classes, H, W)`` at the input's size (in training mode with an auxiliary head,
  to ``{"out": logits, "aux": aux_logits}``, both at the input's size);
* has ``num_classes`` (int >= 1), ``in_channels`` (3 unless stated), ``output_stride``
  (the stride of its coarsest feature map, or ``None`` when it has no single one) and
  ``backbone`` (the part that may start from ImageNet weights, or ``None``; the
  :class:`~seglit.module.SegmentationModule` gives every other parameter the head learning
  rate);
* rejects a malformed input with a ``ValueError`` before any layer runs.

:class:`SegmentationModel` provides the attributes and the input check; :func:`check_contract`
verifies the attributes of a built model (the registry runs it on every
:func:`~seglit.models.registry.build_model`; the zoo tests run the forward checks).
"""

from __future__ import annotations

from torch import Tensor, nn


def check_num_classes(num_classes: object) -> None:
    """Raise a ValueError unless ``num_classes`` is an int >= 1."""
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"invalid num_classes={num_classes!r}; expected an int >= 1")


def check_input(x: object, in_channels: int = 3) -> None:
    """Validate a batch before it reaches any layer.

    Args:
        x: Input batch, expected ``(N, in_channels, H, W)``.
        in_channels: Expected number of channels.

    Raises:
        ValueError: If ``x`` is not a 4-D tensor with ``in_channels`` channels.
    """
    if not isinstance(x, Tensor) or x.ndim != 4:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ValueError(f"expected a 4-D input (N, {in_channels}, H, W), got {shape}")
    if x.shape[1] != in_channels:
        raise ValueError(f"expected {in_channels} input channels, got {x.shape[1]}")


class SegmentationModel(nn.Module):
    """Base class of seglit's models: the contract's attributes and the input check.

    Subclasses build their layers after ``super().__init__(num_classes)``, set
    ``output_stride`` and ``backbone`` (a module, or ``None`` when the model has no
    pretrainable part), and call :meth:`check_input` first thing in ``forward``.

    Args:
        num_classes: Number of output classes (validated here).
        in_channels: Input channels.
    """

    output_stride: int | None = None

    def __init__(self, num_classes: int, in_channels: int = 3) -> None:
        super().__init__()
        check_num_classes(num_classes)
        if isinstance(in_channels, bool) or not isinstance(in_channels, int) or in_channels < 1:
            raise ValueError(f"invalid in_channels={in_channels!r}; expected an int >= 1")
        self.num_classes = num_classes
        self.in_channels = in_channels

    def check_input(self, x: Tensor) -> None:
        """Raise a ValueError unless ``x`` is ``(N, in_channels, H, W)``."""
        check_input(x, self.in_channels)


def check_contract(model: nn.Module) -> None:
    """Raise a TypeError naming what a built model lacks of the contract (module docstring)."""
    name = type(model).__name__
    problems = []
    num_classes = getattr(model, "num_classes", None)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        problems.append(f"num_classes must be an int >= 1, got {num_classes!r}")
    in_channels = getattr(model, "in_channels", 3)
    if not isinstance(in_channels, int) or in_channels < 1:
        problems.append(f"in_channels must be an int >= 1, got {in_channels!r}")
    stride = getattr(model, "output_stride", None)
    if stride is not None and (not isinstance(stride, int) or stride < 1):
        problems.append(f"output_stride must be None or an int >= 1, got {stride!r}")
    if not hasattr(model, "backbone"):
        problems.append("it has no `backbone` attribute (set it to None if it has none)")
    elif model.backbone is not None and not isinstance(model.backbone, nn.Module):
        problems.append(f"backbone must be an nn.Module or None, got {type(model.backbone)}")
    if problems:
        raise TypeError(f"{name} breaks the model contract: " + "; ".join(problems))
