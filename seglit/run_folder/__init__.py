"""The one owner of run folders: their file names, ``metrics.json``, status and checkpoints.

A run folder (one variant of a recipe, or one ``seglit fit``) holds::

    config.yaml            the config it was started with (``seglit fit --config`` reruns it)
    fingerprint.json       what decides its result (see :func:`seglit.fingerprint.fingerprint`)
    resolved_config.yaml   the config with every default filled in (written by the CLI)
    metrics.json           the result (:class:`RunMetrics`; written last, atomically)
    val_image_confmats.npz the best epoch's per-image confusion matrices (for intervals)
    progress.json          live progress while it trains (read by the runner's console)
    train.log              everything the run printed
    checkpoints/           best-*.ckpt and last.ckpt
    wandb/                 the W&B run(s)
    <job>/version_<n>/     later jobs on it: ``validate``, ``test``, ``predict``, or a
                           ``fit`` that must not overwrite a finished result

One module per job: :mod:`~seglit.run_folder.layout` (every file name and the statuses),
:mod:`~seglit.run_folder.metrics` (``metrics.json``), :mod:`~seglit.run_folder.status`
(``fingerprint.json``, the run's status, later jobs' folders) and
:mod:`~seglit.run_folder.checkpoints` (best / last / resume). Everything public is
importable from this package. It imports neither torch nor Lightning: the summary and the
runner's planning use it without paying for them.
"""

from seglit.run_folder.checkpoints import (
    BEST,
    LAST,
    RESUME,
    CheckpointNotFound,
    checkpoint_readable,
    choose_checkpoint,
)
from seglit.run_folder.layout import (
    ARCHIVE_DIR,
    BEST_CHECKPOINT_FILENAME,
    BEST_CHECKPOINT_GLOB,
    BEST_CHECKPOINT_PREFIX,
    CHECKPOINT_DIR,
    CHECKPOINT_GLOB,
    CLASS_HEATMAP,
    CONFIG_FILE,
    FAILED,
    FINGERPRINT_FILE,
    FINISHED,
    IMAGE_CONFMATS_FILE,
    LAST_CHECKPOINT,
    LOCK_FILE,
    METRICS_BACKUP,
    METRICS_FILE,
    MIOU_PLOT,
    MISMATCH,
    PARTIAL,
    PENDING,
    PROGRESS_ENV,
    PROGRESS_FILE,
    RESOLVED_CONFIG_FILE,
    SUMMARY_CSV,
    SUMMARY_JSON,
    SUMMARY_MD,
    SUMMARY_RUN_DIR,
    TRAIN_LOG,
    UNSYNCED_LIST,
    WANDB_LOGGER_CLASS,
    WANDB_LOGGER_CLASSES,
    best_checkpoint_name,
    eval_metrics_file,
)
from seglit.run_folder.metrics import (
    RunMetrics,
    failure_record,
    read_metrics,
    restore_metrics,
    write_metrics,
    write_metrics_backup,
)
from seglit.run_folder.status import (
    new_output_dir,
    new_run_id,
    next_version_dir,
    read_fingerprint,
    run_status,
    write_fingerprint,
)

__all__ = [
    "ARCHIVE_DIR",
    "BEST",
    "BEST_CHECKPOINT_FILENAME",
    "BEST_CHECKPOINT_GLOB",
    "BEST_CHECKPOINT_PREFIX",
    "CHECKPOINT_DIR",
    "CHECKPOINT_GLOB",
    "CLASS_HEATMAP",
    "CONFIG_FILE",
    "FAILED",
    "FINGERPRINT_FILE",
    "FINISHED",
    "IMAGE_CONFMATS_FILE",
    "LAST",
    "LAST_CHECKPOINT",
    "LOCK_FILE",
    "METRICS_BACKUP",
    "METRICS_FILE",
    "MIOU_PLOT",
    "MISMATCH",
    "PARTIAL",
    "PENDING",
    "PROGRESS_ENV",
    "PROGRESS_FILE",
    "RESOLVED_CONFIG_FILE",
    "RESUME",
    "SUMMARY_CSV",
    "SUMMARY_JSON",
    "SUMMARY_MD",
    "SUMMARY_RUN_DIR",
    "TRAIN_LOG",
    "UNSYNCED_LIST",
    "WANDB_LOGGER_CLASS",
    "WANDB_LOGGER_CLASSES",
    "CheckpointNotFound",
    "RunMetrics",
    "best_checkpoint_name",
    "checkpoint_readable",
    "choose_checkpoint",
    "eval_metrics_file",
    "failure_record",
    "new_output_dir",
    "new_run_id",
    "next_version_dir",
    "read_fingerprint",
    "read_metrics",
    "restore_metrics",
    "run_status",
    "write_fingerprint",
    "write_metrics",
    "write_metrics_backup",
]
