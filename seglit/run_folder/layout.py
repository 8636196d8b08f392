"""Every file name of a run folder and of a recipe's output folder, and the run statuses.

Nothing outside :mod:`seglit.run_folder` spells these names: it imports them from here.
"""

from __future__ import annotations

CONFIG_FILE = "config.yaml"
RESOLVED_CONFIG_FILE = "resolved_config.yaml"
FINGERPRINT_FILE = "fingerprint.json"
METRICS_FILE = "metrics.json"
METRICS_BACKUP = "checkpoints/final_metrics.json"
"""A copy of a finished run's ``metrics.json``, written just before it."""
IMAGE_CONFMATS_FILE = "val_image_confmats.npz"
PROGRESS_FILE = "progress.json"
TRAIN_LOG = "train.log"
LOCK_FILE = ".lock"
ARCHIVE_DIR = "_archive"

CHECKPOINT_DIR = "checkpoints"
CHECKPOINT_GLOB = "*.ckpt"
"""Every checkpoint file of a run's checkpoint folder."""
LAST_CHECKPOINT = "last.ckpt"
BEST_CHECKPOINT_PREFIX = "best-"
BEST_CHECKPOINT_GLOB = "best*.ckpt"
BEST_CHECKPOINT_FILENAME = "best-epoch{epoch:03d}-step{step:06d}"
"""The best checkpoint's ``ModelCheckpoint.filename`` (metric names not inserted)."""

SUMMARY_MD = "summary.md"
SUMMARY_CSV = "summary.csv"
SUMMARY_JSON = "summary.json"
MIOU_PLOT = "summary_miou.png"
CLASS_HEATMAP = "summary_class_iou.png"
SUMMARY_RUN_DIR = "_summary"
UNSYNCED_LIST = "wandb_unsynced.txt"
"""The recipe folder's list of W&B runs not uploaded yet (for ``wandb sync``)."""

PROGRESS_ENV = "SEGLIT_PROGRESS_FILE"
"""Environment variable naming the file a run reports its progress to (set by the runner)."""

WANDB_LOGGER_CLASS = "seglit.wandb.logger.WandbLogger"
"""The ``class_path`` of seglit's W&B logger in configs."""

WANDB_LOGGER_CLASSES = (WANDB_LOGGER_CLASS, "seglit.tracking.WandbLogger")
"""Every ``class_path`` of seglit's W&B logger: the current one and its path before
:mod:`seglit.wandb` (still in older run folders' ``config.yaml`` and in recipes)."""

FINISHED, FAILED, PARTIAL, PENDING, MISMATCH = (
    "finished",
    "failed",
    "partial",
    "pending",
    "mismatch",
)
"""Variant statuses, shared by the runner's console and the summary."""


def best_checkpoint_name(epoch: int, step: int) -> str:
    """The file name of the best checkpoint saved at ``epoch`` and ``step``."""
    return BEST_CHECKPOINT_FILENAME.format(epoch=epoch, step=step) + ".ckpt"


def eval_metrics_file(job: str) -> str:
    """``validate_metrics.json`` / ``test_metrics.json``: a standalone evaluation's result."""
    return f"{job}_metrics.json"
