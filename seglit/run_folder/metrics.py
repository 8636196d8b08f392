"""``metrics.json``: a run's result (:class:`RunMetrics`), written last and atomically.

The callback that ends a fit writes it (:class:`seglit.callbacks.RunSummaryWriter`); the
runner, the summary and the inference tools read it, all through :func:`read_metrics`.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from seglit.io import read_json, write_json
from seglit.run_folder.layout import FAILED, FINISHED, METRICS_BACKUP, METRICS_FILE

_RESULT_KEYS = (
    "status",
    "fingerprint",
    "best",
    "history",
    "epochs",
    "steps",
    "params",
    "gflops",
    "wall_time_s",
    "train_images_per_sec",
    "peak_mem_mb",
)
_FAILURE_KEYS = ("status", "fingerprint", "returncode", "error", "log_tail")


@dataclass
class RunMetrics:
    """A run's ``metrics.json``: its status and, when it finished, its result.

    Attributes:
        status: ``"finished"`` or ``"failed"``.
        fingerprint: The digest of the config the run trained (``None`` in runs of a seglit
            without fingerprints).
        best: The best validation epoch's record (``epoch``, ``step``, the scalars,
            ``IoU`` per class and ``confmat``).
        history: Every validation epoch's record, in order.
        epochs: Epochs trained.
        steps: Optimizer steps taken.
        params: The net's parameter count.
        gflops: GFLOPs of one forward pass at the training crop size.
        wall_time_s: Wall-clock seconds of fitting, resumes included.
        train_images_per_sec: Training throughput (per process).
        peak_mem_mb: Peak memory in MiB.
        restored: Set when the record was rebuilt from a checkpoint (``from_checkpoint``,
            and the ``unknown`` keys it could not re-measure).
        returncode: A failed run's exit status.
        error: A failed run's last error lines.
        log_tail: A failed run's last log lines.
        extra: Keys this seglit does not know, kept as read (written back unchanged).
    """

    status: str
    fingerprint: str | None = None
    best: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    epochs: int | None = None
    steps: int | None = None
    params: int | None = None
    gflops: float | None = None
    wall_time_s: float | None = None
    train_images_per_sec: float | None = None
    peak_mem_mb: float | None = None
    restored: dict[str, Any] | None = None
    returncode: int | None = None
    error: str | None = None
    log_tail: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def best_miou(self) -> float:
        """The best epoch's val mIoU (NaN when there is none or it is undefined)."""
        miou = (self.best or {}).get("mIoU")
        return math.nan if miou is None else miou

    def to_json(self) -> dict[str, Any]:
        """The ``metrics.json`` record: a failed run's keys or a result's, then ``extra``."""
        keys = _FAILURE_KEYS if self.status == FAILED else _RESULT_KEYS
        record = {key: getattr(self, key) for key in keys}
        if self.restored is not None and self.status != FAILED:
            record["restored"] = self.restored
        record.update(self.extra)
        return record

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunMetrics:
        """The record ``data`` holds; keys it lacks (older runs) take their defaults.

        Raises:
            ValueError: ``data`` holds no ``status``.
        """
        if not isinstance(data, Mapping) or "status" not in data:
            raise ValueError("holds no run status")
        known = {f.name for f in fields(cls)} - {"extra"}
        values = {k: v for k, v in data.items() if k in known}
        for key in ("history", "log_tail"):
            if values.get(key) is None:
                values.pop(key, None)
        extra = {k: v for k, v in data.items() if k not in known}
        return cls(**values, extra=extra)


def read_metrics(run_dir: str | os.PathLike) -> RunMetrics | None:
    """The run's ``metrics.json``; ``None`` if it has none.

    Raises:
        ValueError: The file exists but cannot be read as a metrics record (names it).
    """
    path = Path(run_dir) / METRICS_FILE
    data = read_json(path)
    if data is None:
        return None
    try:
        return RunMetrics.from_json(data)
    except (ValueError, TypeError):
        raise ValueError(f"{path} holds no run status") from None


def write_metrics(run_dir: str | os.PathLike, metrics: RunMetrics) -> None:
    """Write ``metrics.json`` atomically."""
    write_json(Path(run_dir) / METRICS_FILE, metrics.to_json())


def write_metrics_backup(run_dir: str | os.PathLike, metrics: RunMetrics) -> None:
    """Write the copy of ``metrics.json`` that :func:`restore_metrics` restores from."""
    write_json(Path(run_dir) / METRICS_BACKUP, metrics.to_json())


def restore_metrics(run_dir: str | os.PathLike, digest: str) -> list[str]:
    """Repair a run's ``metrics.json`` from its backup copy, never overwriting silently.

    An unreadable ``metrics.json`` is renamed ``metrics.json.unreadable-<time>``; a missing
    one is restored from :data:`~seglit.run_folder.METRICS_BACKUP` when that copy holds a
    finished result of this fingerprint (what the run measured is kept, nothing is
    retrained).

    Returns:
        One line per thing done, for the console.
    """
    run_dir = Path(run_dir)
    path = run_dir / METRICS_FILE
    notes = []
    try:
        read_metrics(run_dir)
    except ValueError as err:
        aside = path.with_name(f"{METRICS_FILE}.unreadable-{time.strftime('%Y%m%d-%H%M%S')}")
        path.replace(aside)
        notes.append(f"{err}; set aside as {aside.name}")
    if path.exists():
        return notes
    try:
        backup = read_json(run_dir / METRICS_BACKUP)
    except ValueError:
        backup = None
    if (
        isinstance(backup, dict)
        and backup.get("status") == FINISHED
        and backup.get("fingerprint") == digest
    ):
        write_json(path, backup)  # the backup as read: keys and values kept as they are
        notes.append(f"{METRICS_FILE} was missing or unreadable: restored from {METRICS_BACKUP}")
    elif notes:
        notes.append(f"no backup of {METRICS_FILE}: recomputing it from the run's checkpoint")
    return notes


def failure_record(
    digest: str | None, returncode: int, error: str, log_tail: list[str]
) -> RunMetrics:
    """The ``metrics.json`` of a failed run: exit code, the error's last lines, the log tail."""
    return RunMetrics(
        status=FAILED, fingerprint=digest, returncode=returncode, error=error, log_tail=log_tail
    )
