"""A variant folder's lock: one process at a time trains (or submits) a variant."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from seglit.run_folder import LOCK_FILE

if TYPE_CHECKING:
    from filelock import FileLock


def try_lock(run_dir: Path) -> FileLock | None:
    """Create ``run_dir`` and take its lock without waiting.

    Args:
        run_dir: The variant's folder.

    Returns:
        The held lock (release it when done), or ``None`` when another process holds it.

    Raises:
        OSError: The folder or its lock file cannot be created.
    """
    from filelock import FileLock, Timeout

    run_dir.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(run_dir / LOCK_FILE))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return None
    return lock
