"""The model card: parameter count, GFLOPs, output stride and theoretical receptive field."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode
from torch.utils.flop_counter import FlopCounterMode
from torch.utils.weak import WeakTensorKeyDictionary

__all__ = ["describe_model", "receptive_field"]


class _ReceptiveFieldMode(TorchFunctionMode):
    """Propagate (receptive field, jump) through every op of a forward pass.

    Each tracked tensor carries the theoretical receptive field of its pixels (in input
    pixels) and its jump (input pixels between adjacent pixels). Convs and pools add
    ``(k - 1) * dilation * jump``; transposed convs add ``(ceil(k / s) - 1) * jump``; bilinear
    resizing adds one jump; global pooling makes the field infinite; element-wise ops and
    concatenation take the largest field of their inputs (the deepest path).
    """

    def __init__(self) -> None:
        super().__init__()
        # keyed weakly by tensor: intermediate activations are freed as usual
        self.info: WeakTensorKeyDictionary = WeakTensorKeyDictionary()

    def track(self, t: Tensor, rf: float, jump: float) -> None:
        self.info[t] = (rf, jump)

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: D105
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        flat = list(args) + list(kwargs.values())
        flat += [t for a in args if isinstance(a, (list, tuple)) for t in a]
        ins = [t for t in flat if isinstance(t, Tensor) and t in self.info]
        if not ins or not isinstance(out, Tensor):
            return out
        rf = max(self.info[t][0] for t in ins)
        rf0, jump = self.info[ins[0]]
        name = getattr(func, "__name__", "")

        def arg(i: int, key: str, default: Any) -> Any:
            if key in kwargs:
                return kwargs[key]
            return args[i] if len(args) > i else default

        def first(v: Any) -> int:
            return int(v[0] if isinstance(v, (tuple, list)) else v)

        if name == "conv2d":
            k = args[1].shape[-1]
            rf = rf0 + (k - 1) * first(arg(5, "dilation", 1)) * jump
            jump *= first(arg(3, "stride", 1))
        elif name == "conv_transpose2d":
            k, s = args[1].shape[-1], first(arg(3, "stride", 1))
            rf = rf0 + (math.ceil(k / s) - 1) * jump
            jump /= s
        elif name in ("max_pool2d", "avg_pool2d", "_max_pool2d", "max_pool2d_with_indices"):
            k = first(arg(1, "kernel_size", 1))
            s = arg(2, "stride", None)
            s = k if s is None or (isinstance(s, (list, tuple)) and len(s) == 0) else first(s)
            d = first(arg(4, "dilation", 1)) if "max" in name else 1
            rf = rf0 + (k - 1) * d * jump
            jump *= s
        elif name in ("adaptive_avg_pool2d", "adaptive_max_pool2d"):
            if out.shape[-1] == 1 and out.shape[-2] == 1:
                rf = math.inf
        elif name == "interpolate" and out.ndim == 4:
            mode = arg(3, "mode", "nearest")
            if "linear" in mode or "cubic" in mode:
                rf = rf0 + jump
            jump = jump * ins[0].shape[-1] / out.shape[-1]
        self.track(out, rf, jump)
        return out


def receptive_field(
    model: nn.Module, input_size: tuple[int, int] = (64, 64), device: torch.device | str = "cpu"
) -> int | None:
    """Theoretical receptive field (input pixels) of an output pixel, or None if global.

    Traced with a torch-function mode over one eval forward pass, so it works for any
    model built from standard ops (branches take the deepest path).
    """
    mode = _ReceptiveFieldMode()
    x = torch.zeros(1, 3, *input_size, device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), mode:
            mode.track(x, 1.0, 1.0)
            out = model(x)
    finally:
        model.train(was_training)
    if not isinstance(out, Tensor) or out not in mode.info:
        return None
    rf = mode.info[out][0]
    return None if math.isinf(rf) else int(round(rf))


def count_gflops(model: nn.Module, input_size: tuple[int, int] = (512, 512)) -> float:
    """GFLOPs of one eval-mode forward pass of a 1x3xHxW input.

    Args:
        model: Any (N, 3, H, W) -> (N, C, H, W) module.
        input_size: (H, W) of the input.

    Returns:
        GFLOPs, counting a multiply-add as 2 FLOPs (``torch.utils.flop_counter``).
    """
    device = next(iter(model.parameters()), torch.zeros(())).device
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    try:
        with torch.no_grad(), counter:
            model(torch.zeros(1, 3, *input_size, device=device))
    finally:
        model.train(was_training)
    return counter.get_total_flops() / 1e9


def describe_model(model: nn.Module, input_size: tuple[int, int] = (512, 512)) -> dict:
    """Model card: parameter count, GFLOPs, output stride and receptive field.

    Args:
        model: A seglit model (any (N, 3, H, W) -> (N, C, H, W) module works).
        input_size: (H, W) of the 1x3xHxW input used to count FLOPs.
            A model on the ``meta`` device is described without computing anything
            (the CLI builds models that way, so even ResNet-101 at 1024x2048 is instant).

    Returns:
        ``{"params": int, "gflops": float, "output_stride": int | None,
        "receptive_field": int | None}``; GFLOPs as in `count_gflops`; receptive field
        ``None`` means global (image pooling).
    """
    params = sum(p.numel() for p in model.parameters())
    device = next(iter(model.parameters()), torch.zeros(())).device
    stride = getattr(model, "output_stride", None)
    return {
        "params": int(params),
        "gflops": count_gflops(model, input_size),
        "output_stride": int(stride) if stride is not None else None,
        "receptive_field": receptive_field(model, input_size, device),
    }
