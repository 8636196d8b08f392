"""Checkpoints that survive kills and full disks, and the choice of one to resume from.

* :class:`AtomicCheckpointIO` writes every checkpoint to a temporary file and renames it
  into place, so a checkpoint on disk is always complete: a kill or a full disk mid-write
  leaves the previous file (and no truncated one).
* :class:`LastCheckpoint` keeps ``last.ckpt`` current after every validation (or training
  epoch), whether or not the monitored metric improved, so a resumed run never redoes
  finished epochs. It is a plain ``ModelCheckpoint`` without a monitor (public API only).
* :func:`resume_checkpoint` picks the newest readable checkpoint of a run and sets aside
  (renames) any that cannot be read, saying so (the choice is
  :func:`seglit.run_folder.choose_checkpoint`'s).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lightning.fabric.plugins import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint

from seglit.io import atomic_file
from seglit.run_folder import (
    BEST_CHECKPOINT_PREFIX,
    LAST_CHECKPOINT,
    RESUME,
    checkpoint_readable,
    choose_checkpoint,
)


class AtomicCheckpointIO(TorchCheckpointIO):
    """``torch.save`` into a temporary file beside the target, then an atomic rename."""

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | os.PathLike, storage_options: Any = None
    ) -> None:
        """Write ``checkpoint`` to ``path`` atomically (local paths; others as Lightning)."""
        if storage_options is not None or "://" in str(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        import torch

        with atomic_file(path, "wb") as handle:
            torch.save(checkpoint, handle)


class LastCheckpoint(ModelCheckpoint):
    """Writes ``last.ckpt`` at every checkpointing point of the loop, improved or not.

    Args:
        dirpath: The checkpoint folder (``None``: Lightning's default, as the best
            checkpoint's).
    """

    def __init__(self, dirpath: str | None = None) -> None:
        super().__init__(
            dirpath=dirpath,
            filename=Path(LAST_CHECKPOINT).stem,
            monitor=None,
            save_top_k=1,
            save_last=False,
            enable_version_counter=False,
        )

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:  # noqa: D102
        remove_superseded_resume(trainer)


def remove_superseded_resume(trainer: Any) -> Path | None:
    """Delete the ``best-*.ckpt`` a run resumed from once a newer best replaced it.

    Lightning never deletes the checkpoint a run resumed from, so a run resumed from its
    best checkpoint (its ``last.ckpt`` unreadable) would end with two "best" files. Only a
    file of the run's own checkpoint folder, named as its best checkpoints are, is removed.

    Returns:
        The file removed, if any.
    """
    best = trainer.checkpoint_callback
    resumed = trainer.ckpt_path
    if not trainer.is_global_zero or not resumed or best is None or not best.dirpath:
        return None
    resumed = Path(resumed)
    current = Path(best.best_model_path) if best.best_model_path else None
    ours = resumed.parent.resolve() == Path(best.dirpath).resolve()
    named_best = resumed.name.startswith(BEST_CHECKPOINT_PREFIX)
    if not (ours and named_best and current and current.is_file()):
        return None
    if current.resolve() == resumed.resolve():
        return None
    resumed.unlink(missing_ok=True)
    return resumed


def resume_checkpoint(run_dir: str | os.PathLike) -> tuple[Path | None, list[str]]:
    """The checkpoint to resume a run from, and what was noticed on the way.

    ``last.ckpt`` when it is readable; otherwise the newest readable ``*.ckpt``. Unreadable
    checkpoints are renamed to ``<name>.corrupt`` (kept for inspection, never loaded).

    Returns:
        ``(path or None, notes)``: each note one line naming a file and what was done.
    """
    return choose_checkpoint(run_dir, RESUME, readable=checkpoint_readable)
