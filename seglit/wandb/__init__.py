"""Everything Weights & Biases, one module per job.

* :mod:`seglit.wandb.logger`: :class:`~seglit.wandb.logger.WandbLogger`, Lightning's W&B
  logger with an offline fallback that never breaks training;
* :mod:`seglit.wandb.media`: the :class:`~seglit.wandb.media.WandbMedia` callback
  (per-class IoU tables, confusion matrices, sample masks);
* :mod:`seglit.wandb.summary`: the recipe's summary run;
* :mod:`seglit.wandb.workspace`: the recipe's W&B workspace
  (``python -m seglit.wandb.workspace``);
* :mod:`seglit.wandb.offline`: offline runs on disk, and those ``wandb sync`` has not
  uploaded.

Importing this package imports none of them (nor ``wandb``). Inside it, ``import wandb``
is the wandb library (absolute imports).
"""
