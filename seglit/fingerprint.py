"""What decides a run's result, and its digest.

A result is only comparable to another if everything that decides it is the same: the
resolved config (after smoke blocks and overrides), the data, the seed and the seglit
version. :func:`fingerprint` hashes exactly that; the run folder records it in
``fingerprint.json`` (:func:`seglit.run_folder.write_fingerprint`). This module imports
neither torch nor Lightning.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import seglit

# Config keys that do not decide a result: where it is written, how it is logged and shown,
# how fast data are loaded, and what the CLI derives from the data config (the number and
# names of classes; Lightning also fills them in from a checkpoint's hyperparameters when it
# resumes). Everything else (model, data class, root, splits, optimizer, schedule, trainer
# loop and precision, devices, seed) is part of the fingerprint.
NON_DECIDING_KEYS = (
    "config",
    "ckpt_path",
    "model.num_classes",
    "model.class_names",
    "model.net.init_args.num_classes",
    "checkpoint",
    "last_checkpoint",
    "run_summary",
    "predict_writer",
    "wandb_media",
    "trainer.logger",
    "trainer.default_root_dir",
    "trainer.enable_progress_bar",
    "trainer.enable_model_summary",
    "trainer.log_every_n_steps",
    "data.init_args.num_workers",
    "data.init_args.pin_memory",
    "data.init_args.persistent_workers",
    "data.init_args.predict_dir",
)


def _drop(config: dict[str, Any], dotted: str) -> None:
    *parents, leaf = dotted.split(".")
    node: Any = config
    for part in parents:
        node = node.get(part) if isinstance(node, dict) else None
        if node is None:
            return
    if isinstance(node, dict):
        node.pop(leaf, None)


def _jsonable(value: Any) -> str:
    """A stable text for a config value JSON cannot hold (a default function, a path)."""
    if hasattr(value, "__module__") and hasattr(value, "__qualname__"):
        return f"{value.__module__}.{value.__qualname__}"
    return re.sub(r" at 0x[0-9a-fA-F]+", "", str(value))  # no memory addresses


def deciding_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config without the keys that do not decide the result (:data:`NON_DECIDING_KEYS`)."""
    decided = json.loads(json.dumps(config, default=_jsonable))  # a deep, JSON-normal copy
    for key in NON_DECIDING_KEYS:
        _drop(decided, key)
    return decided


def fingerprint(config: Mapping[str, Any], version: str | None = None) -> str:
    """A hash of everything that decides a run's result.

    Args:
        config: The fully resolved config (every default filled in, after smoke blocks and
            command-line overrides): model, data class, root and splits, optimizer,
            schedule, trainer and ``seed_everything`` included.
        version: The seglit version (default: the installed one).

    Returns:
        A 16-hex-digit digest of :func:`deciding_config` and the version.
    """
    payload = {"config": deciding_config(config), "seglit": version or seglit.__version__}
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}`` (lists stay values)."""
    if not isinstance(config, Mapping) or not config:
        return {prefix: config} if prefix else {}
    out: dict[str, Any] = {}
    for key, value in config.items():
        out.update(flatten(value, f"{prefix}.{key}" if prefix else str(key)))
    return out


def config_differences(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """``key: old -> new`` lines for every deciding key whose value differs."""
    a, b = flatten(deciding_config(old)), flatten(deciding_config(new))
    lines = []
    for key in sorted(set(a) | set(b)):
        if a.get(key, "<unset>") != b.get(key, "<unset>"):
            lines.append(f"{key}: {a.get(key, '<unset>')!r} -> {b.get(key, '<unset>')!r}")
    return lines


@dataclass
class Fingerprint:
    """The digest of a run's deciding config, with that config (``fingerprint.json``)."""

    digest: str
    config: dict[str, Any]
    seglit_version: str = seglit.__version__

    @classmethod
    def of(cls, resolved_config: Mapping[str, Any]) -> Fingerprint:
        """The fingerprint of a fully resolved config."""
        return cls(fingerprint(resolved_config), deciding_config(resolved_config))

    def to_json(self) -> dict[str, Any]:
        """The ``fingerprint.json`` record."""
        return {
            "fingerprint": self.digest,
            "seglit_version": self.seglit_version,
            "config": self.config,
        }

    @classmethod
    def from_json(cls, data: Any) -> Fingerprint | None:
        """The fingerprint a ``fingerprint.json`` record holds; ``None`` if it holds none."""
        if not isinstance(data, dict) or "fingerprint" not in data:
            return None
        return cls(data["fingerprint"], data.get("config") or {}, data.get("seglit_version", ""))
