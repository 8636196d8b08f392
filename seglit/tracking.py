"""The W&B logger's old import path, kept for the configs that name it.

Run folders written before :mod:`seglit.wandb` (their ``config.yaml``, rerun with
``seglit fit --config``, also by queued SLURM jobs) and recipes written after older docs
name ``seglit.tracking.WandbLogger``; this alias keeps them loadable. Use
:class:`seglit.wandb.logger.WandbLogger`.
"""

from seglit.wandb.logger import WandbLogger

__all__ = ["WandbLogger"]
