"""What a run folder holds: its recorded fingerprint, its status, its later jobs' folders."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from seglit.fingerprint import Fingerprint
from seglit.io import read_json, unwritable_reason, write_json
from seglit.run_folder.layout import (
    CHECKPOINT_DIR,
    CHECKPOINT_GLOB,
    FAILED,
    FINGERPRINT_FILE,
    FINISHED,
    MISMATCH,
    PARTIAL,
    PENDING,
)
from seglit.run_folder.metrics import read_metrics


def write_fingerprint(run_dir: str | os.PathLike, fingerprint: Fingerprint) -> None:
    """Write ``fingerprint.json`` into ``run_dir``."""
    write_json(Path(run_dir) / FINGERPRINT_FILE, fingerprint.to_json())


def read_fingerprint(run_dir: str | os.PathLike) -> Fingerprint | None:
    """The run's ``fingerprint.json``, or ``None`` if it has none or it is unreadable."""
    try:
        data = read_json(Path(run_dir) / FINGERPRINT_FILE)
    except ValueError:
        return None
    return Fingerprint.from_json(data)


def run_status(run_dir: str | os.PathLike, digest: str | None) -> str:
    """What a run folder holds for the config whose fingerprint is ``digest``.

    ``finished`` / ``failed``: its ``metrics.json`` says so for this fingerprint;
    ``mismatch``: it holds a run of another config (or checkpoints without a recorded
    fingerprint); ``partial``: it started (checkpoints) but did not finish; ``pending``:
    nothing yet. The runner and the summary both use this, so they always agree.
    """
    run_dir = Path(run_dir)
    recorded = read_fingerprint(run_dir)
    if recorded is not None and digest is not None and recorded.digest != digest:
        return MISMATCH
    try:
        metrics = read_metrics(run_dir)
    except ValueError:
        metrics = None  # unreadable: the run is treated as not finished (and said so)
    if metrics is not None:
        if digest is not None and metrics.fingerprint != digest:
            return MISMATCH  # the result of another config (or of a seglit without them)
        if metrics.status == FINISHED and metrics.best:
            return FINISHED
        if metrics.status == FAILED:
            return FAILED
    if any((run_dir / CHECKPOINT_DIR).glob(CHECKPOINT_GLOB)):
        # Checkpoints of a config nobody recorded are not this config's to resume.
        return MISMATCH if recorded is None and digest is not None else PARTIAL
    return PENDING


def new_run_id(name: str) -> str:
    """A fresh W&B run id: the run name's first 40 characters and 8 random hex digits."""
    return f"{name[:40]}-{secrets.token_hex(4)}"


def next_version_dir(parent: str | os.PathLike, job: str) -> Path:
    """``<parent>/<job>/version_<n>``: the first ``n`` not taken (Lightning's convention)."""
    base = Path(parent) / job
    n = 0
    while (base / f"version_{n}").exists():
        n += 1
    return base / f"version_{n}"


def new_output_dir(run_dir: Path, out: str | None, job: str, error: type[Exception]) -> Path:
    """The folder a later job on a finished run writes to: ``out``, or the run's next
    ``<run_dir>/<job>/version_<n>``. ``seglit predict`` and ``seglit export`` use it: neither
    ever overwrites files.

    Args:
        run_dir: The finished run's folder.
        out: The ``--out`` folder, or ``None`` for the run's next version folder.
        job: The run's subfolder for versions (``predict``, ``export``).
        error: The exception type the command raises.

    Raises:
        error: ``out`` already holds files, or the folder cannot be written.
    """
    path = next_version_dir(run_dir, job) if out is None else Path(out)
    if out is not None and path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise error(f"--out {path} already holds files; choose a new folder")
    reason = unwritable_reason(path)
    if reason:
        raise error(f"--out {reason}; choose another output folder with --out")
    return path
