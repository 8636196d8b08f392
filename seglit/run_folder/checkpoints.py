"""The choice of a run's checkpoint: the best, the last, or the one to resume from.

:func:`choose_checkpoint` is the one place that decides; :func:`seglit.trained.resolve_checkpoint`
(inference and export) and :func:`seglit.checkpoints.resume_checkpoint` (the runner) call it.
"""

from __future__ import annotations

import os
import zipfile
from collections.abc import Callable
from pathlib import Path

from seglit.run_folder.layout import (
    BEST_CHECKPOINT_GLOB,
    CHECKPOINT_DIR,
    CHECKPOINT_GLOB,
    LAST_CHECKPOINT,
    METRICS_FILE,
    best_checkpoint_name,
)
from seglit.run_folder.metrics import read_metrics

BEST, LAST, RESUME = "best", "last", "resume"
"""The checkpoints :func:`choose_checkpoint` chooses by name (anything else is a path)."""


class CheckpointNotFound(ValueError):
    """The checkpoint asked for does not exist or is ambiguous; the message says which."""


def checkpoint_readable(path: str | os.PathLike) -> bool:
    """Whether a checkpoint file is complete: its zip archive opens and every CRC matches."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip() is None
    except (OSError, zipfile.BadZipFile, ValueError):
        return False


def choose_checkpoint(
    run_dir: str | os.PathLike,
    which: str = BEST,
    readable: Callable[[Path], bool] = checkpoint_readable,
) -> tuple[Path | None, list[str]]:
    """The checkpoint of a run meant by ``which``, and what was noticed on the way.

    Args:
        run_dir: The run folder.
        which: ``"best"``: the ``best-*.ckpt`` of ``checkpoints/`` (when there are several,
            the one of the best epoch recorded in ``metrics.json``); ``"last"``:
            ``checkpoints/last.ckpt``; ``"resume"``: ``last.ckpt`` when it is readable,
            otherwise the newest readable checkpoint, unreadable ones renamed
            ``<name>.corrupt`` (kept for inspection, never loaded); anything else: the path
            of a checkpoint file.
        readable: Whether a checkpoint can be loaded (``"resume"`` only).

    Returns:
        ``(path, notes)``: each note one line naming a file and what was done. ``path`` is
        ``None`` only for ``"resume"`` with nothing readable to resume from.

    Raises:
        CheckpointNotFound: ``"best"``, ``"last"`` or the path does not exist, or ``"best"``
            is ambiguous.
    """
    folder = Path(run_dir) / CHECKPOINT_DIR
    if which == RESUME:
        return _resume(folder, readable)
    if which == LAST:
        path = folder / LAST_CHECKPOINT
        if not path.is_file():
            raise CheckpointNotFound(f"{path} does not exist (no last checkpoint in {folder})")
        return path, []
    if which != BEST:
        path = Path(which)
        if not path.is_file():
            raise CheckpointNotFound(f"checkpoint {path} does not exist")
        return path, []
    return _best(run_dir, folder), []


def _best(run_dir: str | os.PathLike, folder: Path) -> Path:
    candidates = sorted(folder.glob(BEST_CHECKPOINT_GLOB))
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise CheckpointNotFound(
            f"{folder} holds no best-*.ckpt; use --checkpoint last or --checkpoint PATH"
        )
    metrics = read_metrics(run_dir)
    best = (metrics.best if metrics is not None else None) or {}
    name = best_checkpoint_name(best.get("epoch", -1), best.get("step", -1))
    if folder / name in candidates:
        return folder / name
    names = ", ".join(p.name for p in candidates)
    raise CheckpointNotFound(
        f"{folder} holds several best checkpoints ({names}) and none is named after the best "
        f"epoch in {METRICS_FILE}; choose one with --checkpoint PATH"
    )


def _resume(folder: Path, readable: Callable[[Path], bool]) -> tuple[Path | None, list[str]]:
    notes: list[str] = []
    candidates = sorted(
        folder.glob(CHECKPOINT_GLOB), key=lambda p: (p.name != LAST_CHECKPOINT, p.name)
    )
    usable = []
    for path in candidates:
        if readable(path):
            usable.append(path)
            continue
        aside = path.with_name(path.name + ".corrupt")
        path.replace(aside)
        notes.append(f"{path} cannot be read (truncated or damaged); set aside as {aside.name}")
    if not usable:
        return None, notes
    last = folder / LAST_CHECKPOINT
    chosen = last if last in usable else max(usable, key=lambda p: p.stat().st_mtime)
    if chosen != last and notes:
        notes.append(f"resuming from {chosen.name}, the newest readable checkpoint")
    return chosen, notes
