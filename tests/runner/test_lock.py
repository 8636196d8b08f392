"""The variant folder's lock (seglit.runner.lock)."""

from __future__ import annotations

from pathlib import Path

from seglit.run_folder import LOCK_FILE
from seglit.runner.lock import try_lock


def test_try_lock_creates_the_folder_and_refuses_a_second_holder(tmp_path: Path) -> None:
    run_dir = tmp_path / "runs" / "variant"
    lock = try_lock(run_dir)
    assert lock is not None and lock.is_locked
    assert (run_dir / LOCK_FILE).exists()
    assert try_lock(run_dir) is None  # another FileLock object: held, so refused at once
    lock.release()
    again = try_lock(run_dir)
    assert again is not None
    again.release()
