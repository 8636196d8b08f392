"""Optimizer and learning-rate schedule defaults.

The defaults follow the DeepLab/FCN training recipes: SGD with momentum 0.9 and an explicit
weight decay, and the "poly" schedule ``lr = base_lr * (1 - t / T) ** power`` stepped once
per iteration, with an optional linear warmup.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import Tensor
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

FUSED_DEVICE_TYPES = ("cpu", "cuda")


def fused_supported(params: Iterable[Tensor] | Iterable[dict[str, Any]]) -> bool:
    """Whether torch's fused (single-kernel) optimizer step can run on ``params``.

    Fused steps need floating-point parameters on a device with fused kernels; seglit
    enables them on the CPU and CUDA, where they are measured faster (docs/performance.md).

    Args:
        params: Parameters or parameter groups (dicts with a ``"params"`` list).

    Returns:
        True when every parameter is a floating-point tensor on the CPU or a CUDA device.
    """
    tensors: list[Tensor] = []
    for item in params:
        tensors.extend(item["params"] if isinstance(item, dict) else [item])
    return bool(tensors) and all(
        t.is_floating_point() and t.device.type in FUSED_DEVICE_TYPES for t in tensors
    )


def default_sgd(params: Iterable[Tensor] | Iterable[dict[str, Any]]) -> torch.optim.SGD:
    """SGD with lr 0.01, momentum 0.9 and weight decay 1e-4 written explicitly.

    The step is fused (``fused=True``: one kernel over all parameters instead of a Python
    loop per tensor) where :func:`fused_supported` allows it: the same update, about 3x
    cheaper on the CPU for a ResNet-50 (docs/performance.md).

    Args:
        params: Parameters or parameter groups to optimize.

    Returns:
        The optimizer.
    """
    params = list(params)
    fused = True if fused_supported(params) else None
    return torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=1e-4, fused=fused)


class PolyLR(LRScheduler):
    """Poly learning-rate decay with optional linear warmup, stepped per iteration.

    ``lr(t) = min_lr + (base_lr - min_lr) * (1 - t / total_iters) ** power`` after warmup;
    during the first ``warmup_iters`` steps the factor ramps linearly from ``warmup_ratio``
    to 1.

    Args:
        optimizer: The wrapped optimizer.
        total_iters: Total number of optimizer steps. ``None`` lets
            :class:`seglit.module.SegmentationModule` fill in
            ``trainer.estimated_stepping_batches`` before training starts.
        power: Exponent of the decay (0.9 in DeepLab).
        warmup_iters: Number of linear warmup steps.
        warmup_ratio: LR factor at step 0 of the warmup.
        min_lr: LR floor reached at ``total_iters``.
        last_epoch: Index of the last step (``-1`` to start fresh).
    """

    def __init__(
        self,
        optimizer: Optimizer,
        total_iters: int | None = None,
        power: float = 0.9,
        warmup_iters: int = 0,
        warmup_ratio: float = 0.1,
        min_lr: float = 0.0,
        last_epoch: int = -1,
    ) -> None:
        if total_iters is not None and total_iters <= 0:
            raise ValueError(
                f"PolyLR: total_iters must be a positive int or None, got {total_iters}"
            )
        if warmup_iters < 0:
            raise ValueError(f"PolyLR: warmup_iters must be >= 0, got {warmup_iters}")
        self.total_iters = total_iters
        self.power = power
        self.warmup_iters = warmup_iters
        self.warmup_ratio = warmup_ratio
        self.min_lr = min_lr
        super().__init__(optimizer, last_epoch)

    def factor(self, step: int) -> float:
        """Return the multiplier of ``base_lr - min_lr`` at ``step`` (before ``min_lr``)."""
        if self.warmup_iters and step < self.warmup_iters:
            alpha = step / self.warmup_iters
            return self.warmup_ratio + (1.0 - self.warmup_ratio) * alpha
        if self.total_iters is None:
            return 1.0
        progress = min(step, self.total_iters) / self.total_iters
        return (1.0 - progress) ** self.power

    def get_lr(self) -> list[float]:
        """Learning rates of every parameter group at the current step."""
        f = self.factor(self.last_epoch)
        return [self.min_lr + (base - self.min_lr) * f for base in self.base_lrs]
