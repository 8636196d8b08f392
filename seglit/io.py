"""Atomic file writes and JSON reads, shared by everything that writes run files.

A reader never sees a half-written file: every write goes to a temporary file beside the
target and replaces it in one step. This module imports neither torch nor Lightning.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike, mode: str = "w") -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success it replaces ``path`` in one step.

    A reader never sees a half-written file, and an interrupted or failed write (a full disk,
    a kill) leaves the previous file untouched and no temporary file behind.

    Args:
        path: The file to write.
        mode: ``"w"`` (text) or ``"wb"`` (binary).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # what open() would have given (mkstemp: 0600)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def unwritable_reason(folder: str | os.PathLike) -> str | None:
    """Why files cannot be written into ``folder`` (made if missing), or ``None`` if they can.

    Nothing is created: the nearest existing ancestor is probed with a temporary file (a
    read-only file system, no permission), and a file where a folder should be is named.
    """
    path = Path(folder)
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        where = "is a file" if existing == path else f"is under a file ({existing})"
        return f"{path} {where}, not a folder"
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        return f"cannot write in {existing} ({err.strerror or err})"
    return None


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_file`)."""
    with atomic_file(path) as handle:
        handle.write(text)


def write_json(path: str | os.PathLike, payload: Any) -> None:
    """Write ``payload`` as indented JSON, atomically (NaN written as ``null``)."""
    atomic_write_text(path, json.dumps(finite(payload), indent=2) + "\n")


def read_json(path: str | os.PathLike) -> Any | None:
    """The JSON in ``path``; ``None`` if it does not exist.

    Raises:
        ValueError: The file exists but is not valid JSON (names the file).
    """
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err})") from None


def finite(value: Any) -> Any:
    """``value`` with every NaN (nested in mappings and lists too) as ``None``: JSON has no NaN."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, Mapping):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value
