"""Reading offline W&B runs back from disk: the test suite's reader of ``.wandb`` files.

wandb has no Python reader for its ``.wandb`` run files. :func:`read_offline_run` reads one
(config, history rows, summary, group, job type, tags and logged files); the tests use it
to check what runs logged (docs/tracking.md shows it on a source checkout). Finding the
run files is :func:`seglit.wandb.offline.find_offline_runs`'s job.

``tests/conftest.py`` puts this folder on ``sys.path``: tests ``import wandb_records``.
"""

from __future__ import annotations

import json
import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_HEADER = b":W&B"
_HEADER_SIZE = 7
_BLOCK = 32 * 1024
_RECORD_HEADER = 7
_FULL, _FIRST, _MIDDLE, _LAST = 1, 2, 3, 4


def iter_records(path: str | Path):
    """Yield the raw protobuf payloads stored in a ``.wandb`` file.

    The file is a LevelDB-style log: a 7-byte header (``:W&B``, magic, version), then
    32 KiB blocks of records, each with a 7-byte header (crc u32, length u16, type u8);
    a payload may be split into FIRST/MIDDLE/LAST fragments across blocks.
    """
    data = Path(path).read_bytes()
    if not data.startswith(_HEADER):
        raise ValueError(f"{path}: not a W&B run file (missing ':W&B' header)")
    pos = _HEADER_SIZE
    pending = b""
    while pos + _RECORD_HEADER <= len(data):
        left_in_block = _BLOCK - pos % _BLOCK
        if left_in_block < _RECORD_HEADER:
            pos += left_in_block  # block trailer padding
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + _RECORD_HEADER])
        pos += _RECORD_HEADER
        chunk = data[pos : pos + length]
        pos += length
        if kind == _FULL:
            yield chunk
        elif kind == _FIRST:
            pending = chunk
        elif kind == _MIDDLE:
            pending += chunk
        elif kind == _LAST:
            yield pending + chunk
            pending = b""
        elif kind == 0 and length == 0:
            pos += _BLOCK - pos % _BLOCK  # zero padding up to the next block
        else:
            raise ValueError(f"{path}: corrupt record of type {kind} at byte {pos}")


@dataclass
class OfflineRun:
    """What an offline W&B run logged, read back from its ``.wandb`` file."""

    path: Path
    run_id: str = ""
    name: str = ""
    group: str = ""
    job_type: str = ""
    project: str = ""
    tags: list[str] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    exit_code: int | None = None
    """The run's exit code; ``None`` while the file has no exit record (the run is still
    going, was killed, or W&B has not flushed the file yet)."""

    def metric(self, key: str) -> list[Any]:
        """Values of one history key in logging order (rows without it skipped)."""
        return [row[key] for row in self.history if key in row]


def _json_items(items) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items:
        key = item.key if item.key else "/".join(item.nested_key)
        try:
            out[key] = json.loads(item.value_json)
        except json.JSONDecodeError:
            out[key] = item.value_json
    return out


def read_offline_run(path: str | Path, timeout_s: float = 0.0) -> OfflineRun:
    """Read an offline W&B run back from disk.

    ``wandb.finish()`` can return before W&B's service process has written the file, so a
    reader running right after a run in the same process should wait for the run's exit
    record with ``timeout_s``.

    Args:
        path: The ``run-<id>.wandb`` file, or the ``offline-run-*`` folder holding it.
        timeout_s: Re-read for up to this many seconds until the file holds the run's exit
            record; after that, return what it holds (``exit_code`` stays ``None``).

    Returns:
        An :class:`OfflineRun` with the run's metadata, config, history and summary.

    Raises:
        FileNotFoundError: ``path`` is a folder without a ``.wandb`` file.
        ValueError: The file is not a W&B run file or is corrupt (after ``timeout_s``).
    """
    path = Path(path)
    if path.is_dir():
        found = sorted(path.glob("*.wandb"))
        if not found:
            raise FileNotFoundError(f"no .wandb file in {path}")
        path = found[0]
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            run = _parse_offline_run(path)
        except ValueError:  # a record still being written reads as truncated
            if time.monotonic() >= deadline:
                raise
        else:
            if run.exit_code is not None or time.monotonic() >= deadline:
                return run
        time.sleep(0.1)


def _parse_offline_run(path: Path) -> OfflineRun:
    from wandb.proto import wandb_internal_pb2 as pb

    run = OfflineRun(path=path)
    for payload in iter_records(path):
        record = pb.Record()
        record.ParseFromString(payload)
        kind = record.WhichOneof("record_type")
        if kind == "run":
            r = record.run
            run.run_id, run.name, run.group = r.run_id, r.display_name, r.run_group
            run.job_type, run.project, run.tags = r.job_type, r.project, list(r.tags)
            run.config.update(_unwrap_config(_json_items(r.config.update)))
        elif kind == "config":
            run.config.update(_unwrap_config(_json_items(record.config.update)))
        elif kind == "history":
            run.history.append(_json_items(record.history.item))
        elif kind == "summary":
            run.summary.update(_json_items(record.summary.update))
        elif kind == "files":
            run.files.extend(f.path for f in record.files.files)
        elif kind == "exit":
            run.exit_code = record.exit.exit_code
    return run


def _unwrap_config(config: dict[str, Any]) -> dict[str, Any]:
    """W&B stores config values as ``{"value": v}``; return plain values."""
    return {
        k: v["value"] if isinstance(v, dict) and set(v) <= {"value", "desc"} and "value" in v else v
        for k, v in config.items()
        if k != "_wandb"
    }
