"""Weights & Biases tracking that never breaks training.

:class:`WandbLogger` is Lightning's ``WandbLogger`` with three additions:

* ``mode="auto"`` (the default) runs online when W&B credentials are configured and
  offline otherwise, so a run without an account or network keeps its data on disk;
* a failure of W&B itself (at start or mid-run) turns into a warning and an offline or
  disabled run; training goes on;
* at the end of an offline run it prints the ``wandb sync`` command that uploads it.

:func:`read_offline_run` reads an offline ``.wandb`` run file back from disk (wandb has
no Python reader for it): config, history rows, summary, group, tags and logged files.
"""

from __future__ import annotations

import json
import netrc
import os
import struct
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from lightning.pytorch.loggers import WandbLogger as _LightningWandbLogger
from lightning.pytorch.utilities import rank_zero_only

Mode = Literal["auto", "online", "offline", "disabled"]


def has_wandb_credentials() -> bool:
    """Whether an API key is available (``WANDB_API_KEY`` or a netrc entry for W&B)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        entries = netrc.netrc(os.environ.get("NETRC")).hosts
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False
    return any("wandb" in host for host in entries)


def resolve_mode(mode: Mode) -> str:
    """Turn ``"auto"`` into ``"online"`` or ``"offline"``; ``WANDB_MODE`` wins if set."""
    env = os.environ.get("WANDB_MODE")
    if mode == "auto":
        if env in ("online", "offline", "disabled"):
            return env
        if env == "dryrun":
            return "offline"
        return "online" if has_wandb_credentials() else "offline"
    return mode


class WandbLogger(_LightningWandbLogger):
    """Lightning's ``WandbLogger`` that falls back to offline and never fails training.

    Args:
        project: W&B project.
        name: Run name (the variant's name in a recipe).
        group: Run group (the recipe's name).
        job_type: W&B job type, e.g. ``"train"`` or ``"summary"``.
        tags: Run tags (one per ablation axis value in a recipe).
        save_dir: Directory that receives the ``wandb/`` folder.
        id: Run id; reusing it resumes the same W&B run after an interruption.
        mode: ``"auto"`` (online with credentials, offline without), ``"online"``,
            ``"offline"`` or ``"disabled"``.
        entity: W&B entity (user or team).
        log_model: Upload checkpoints as artifacts (online only).
        notes: Free-text notes.
    """

    def __init__(
        self,
        project: str = "seglit",
        name: str | None = None,
        group: str | None = None,
        job_type: str = "train",
        tags: list[str] | None = None,
        save_dir: str = ".",
        id: str | None = None,
        mode: Mode = "auto",
        entity: str | None = None,
        log_model: bool = False,
        notes: str | None = None,
    ) -> None:
        self.mode = resolve_mode(mode)
        Path(save_dir).mkdir(parents=True, exist_ok=True)
        super().__init__(
            name=name,
            save_dir=save_dir,
            id=id,
            project=project,
            log_model=log_model and self.mode == "online",
            group=group,
            job_type=job_type,
            tags=list(tags) if tags else None,
            entity=entity,
            notes=notes,
            mode=self.mode,
        )
        self._wandb_init.pop("anonymous", None)  # deprecated in wandb; Lightning always sets it
        self._broken = False
        self._finished = False

    @property
    def experiment(self):  # noqa: D102
        if self._experiment is not None:
            return self._experiment
        try:
            return super().experiment
        except Exception as err:  # W&B unreachable, bad credentials, ...
            fallback = "offline" if self.mode == "online" else "disabled"
            warnings.warn(
                f"W&B could not start in {self.mode} mode ({err}); continuing {fallback}.",
                stacklevel=2,
            )
            self.mode = fallback
            self._wandb_init["mode"] = fallback
            self._experiment = None
            try:
                return super().experiment
            except Exception:
                self.mode = self._wandb_init["mode"] = "disabled"
                return super().experiment

    def _guard(self, method: str, *args: Any, **kwargs: Any) -> None:
        if self._broken:
            return
        try:
            getattr(super(), method)(*args, **kwargs)
        except Exception as err:
            self._broken = True
            warnings.warn(
                f"W&B failed while logging ({err}); training continues without W&B.", stacklevel=3
            )

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:  # noqa: D102
        self._guard("log_metrics", metrics, step)

    @rank_zero_only
    def log_hyperparams(self, params: Any) -> None:  # noqa: D102
        self._guard("log_hyperparams", params)

    @rank_zero_only
    def log_image(
        self, key: str, images: list[Any], step: int | None = None, **kwargs: Any
    ) -> None:  # noqa: D102
        self._guard("log_image", key, images, step, **kwargs)

    @rank_zero_only
    def log_table(
        self,
        key: str,
        columns: list[str] | None = None,
        data: list[list[Any]] | None = None,
        dataframe: Any = None,
        step: int | None = None,
    ) -> None:  # noqa: D102
        self._guard("log_table", key, columns, data, dataframe, step)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """Finish the W&B run; for an offline run, print how to upload it."""
        if self._finished:
            return
        self._finished = True
        self._guard("finalize", status)
        run = self._experiment
        if run is None or self.mode == "disabled":
            return
        run_dir = Path(run.dir).parent
        try:
            run.finish()
        except Exception as err:
            warnings.warn(f"W&B failed to finish the run ({err})", stacklevel=2)
        if self.mode == "offline":
            print(f"W&B offline run saved in {run_dir}\n  upload it with: wandb sync {run_dir}")


# --------------------------------------------------------------------------- reading
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


def find_offline_runs(root: str | Path) -> list[Path]:
    """All offline ``.wandb`` run files below ``root``, oldest first."""
    return sorted(Path(root).rglob("offline-run-*/run-*.wandb"))
