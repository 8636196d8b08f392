"""Optimizer and learning-rate schedule defaults.

The defaults follow the DeepLab/FCN training recipes: SGD with momentum 0.9 and an explicit
weight decay, and the "poly" schedule ``lr = base_lr * (1 - t / T) ** power`` stepped once
per iteration, with an optional linear warmup.
"""

from __future__ import annotations

import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler


def default_sgd(params) -> torch.optim.SGD:
    """SGD with lr 0.01, momentum 0.9 and weight decay 1e-4 written explicitly.

    Args:
        params: Parameters or parameter groups to optimize.

    Returns:
        The optimizer.
    """
    return torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=1e-4)


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
