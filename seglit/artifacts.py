"""The one owner of run files: their names, formats, fingerprints and atomic writes.

A run folder (one variant of a recipe, or one ``seglit fit``) holds::

    config.yaml            the config it was started with (``seglit fit --config`` reruns it)
    fingerprint.json       what decides its result (see :func:`fingerprint`)
    resolved_config.yaml   the config with every default filled in (written by the CLI)
    metrics.json           the result (:class:`RunMetrics` format; written last, atomically)
    val_image_confmats.npz the best epoch's per-image confusion matrices (for intervals)
    progress.json          live progress while it trains (read by the runner's console)
    train.log              everything the run printed
    checkpoints/           best-*.ckpt and last.ckpt
    wandb/                 the W&B run(s)
    <job>/version_<n>/     later jobs on it: ``validate``, ``test``, ``predict``, or a
                           ``fit`` that must not overwrite a finished result

The summary's format (:class:`Row`, ``summary.{md,csv,json}``) is here too. This module
imports neither torch nor Lightning: the report, the plots and the runner's planning use it
without paying for them.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import math
import os
import re
import secrets
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

import seglit

CONFIG_FILE = "config.yaml"
RESOLVED_CONFIG_FILE = "resolved_config.yaml"
FINGERPRINT_FILE = "fingerprint.json"
METRICS_FILE = "metrics.json"
METRICS_BACKUP = "checkpoints/final_metrics.json"
"""A copy of a finished run's ``metrics.json``, written just before it."""
IMAGE_CONFMATS_FILE = "val_image_confmats.npz"
PROGRESS_FILE = "progress.json"
TRAIN_LOG = "train.log"
LOCK_FILE = ".lock"
CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"
SUMMARY_MD = "summary.md"
SUMMARY_CSV = "summary.csv"
SUMMARY_JSON = "summary.json"
SUMMARY_RUN_DIR = "_summary"
ARCHIVE_DIR = "_archive"

PROGRESS_ENV = "SEGLIT_PROGRESS_FILE"
"""Environment variable naming the file a run reports its progress to (set by the runner)."""

WANDB_LOGGER_CLASS = "seglit.wandb.logger.WandbLogger"
"""The ``class_path`` of seglit's W&B logger in configs."""

WANDB_LOGGER_CLASSES = (WANDB_LOGGER_CLASS, "seglit.tracking.WandbLogger")
"""Every ``class_path`` of seglit's W&B logger: the current one and its path before
:mod:`seglit.wandb` (still in older run folders' ``config.yaml`` and in recipes)."""

FINISHED, FAILED, PARTIAL, PENDING, MISMATCH = (
    "finished",
    "failed",
    "partial",
    "pending",
    "mismatch",
)
"""Variant statuses, shared by the runner's console and the summary."""

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


# ----------------------------------------------------------------------------- atomic writes


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
    atomic_write_text(path, json.dumps(_finite(payload), indent=2) + "\n")


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


def _finite(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, Mapping):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


# ------------------------------------------------------------------------------ fingerprints


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
    """``fingerprint.json``: the digest and the deciding config it was computed from."""

    digest: str
    config: dict[str, Any]
    seglit_version: str = seglit.__version__

    @classmethod
    def of(cls, resolved_config: Mapping[str, Any]) -> Fingerprint:
        """The fingerprint of a fully resolved config."""
        return cls(fingerprint(resolved_config), deciding_config(resolved_config))

    def write(self, run_dir: str | os.PathLike) -> None:
        """Write ``fingerprint.json`` into ``run_dir``."""
        payload = {"fingerprint": self.digest, "seglit_version": self.seglit_version}
        write_json(Path(run_dir) / FINGERPRINT_FILE, {**payload, "config": self.config})

    @classmethod
    def read(cls, run_dir: str | os.PathLike) -> Fingerprint | None:
        """The run's ``fingerprint.json``, or ``None`` if it has none or it is unreadable."""
        try:
            data = read_json(Path(run_dir) / FINGERPRINT_FILE)
        except ValueError:
            return None
        if not isinstance(data, dict) or "fingerprint" not in data:
            return None
        return cls(data["fingerprint"], data.get("config") or {}, data.get("seglit_version", ""))


# --------------------------------------------------------------------------- evaluation result


@dataclass
class EvalResult:
    """The result of one validation or test epoch, as the LightningModule computed it.

    Attributes:
        stage: ``"val"`` or ``"test"``.
        epoch: Training epoch it belongs to.
        step: Global step it belongs to.
        metrics: Scalars: ``mIoU``, ``acc``, ``mAcc``, ``fwIoU``; with the dense CRF also
            ``mIoU_before_crf`` (and the other scalars ``*_before_crf``); with the
            checkerboard measurement ``checkerboard``.
        iou: Per-class IoU (NaN where a class never occurs).
        confmat: The dataset-level confusion matrix ``(C, C)`` (rows: ground truth).
        image_names: The scored images, sorted, each exactly once.
        image_confmats: Their confusion matrices ``(n, C, C)``, in ``image_names`` order.
    """

    stage: str
    epoch: int
    step: int
    metrics: dict[str, float]
    iou: dict[str, float]
    confmat: Any
    image_names: list[str] = field(default_factory=list)
    image_confmats: Any = None

    def record(self) -> dict[str, Any]:
        """The JSON-ready record of this result (an entry of ``metrics.json``'s history)."""
        return {
            "epoch": self.epoch,
            "step": self.step,
            **self.metrics,
            "IoU": dict(self.iou),
            "confmat": _as_list(self.confmat),
        }


def _as_list(array: Any) -> Any:
    return array.tolist() if hasattr(array, "tolist") else array


# ------------------------------------------------------------------------------- run metrics


def read_metrics(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The run's ``metrics.json``; ``None`` if it has none.

    Raises:
        ValueError: The file exists but cannot be read as a metrics record (names it).
    """
    data = read_json(Path(run_dir) / METRICS_FILE)
    if data is not None and not (isinstance(data, dict) and "status" in data):
        raise ValueError(f"{Path(run_dir) / METRICS_FILE} holds no run status")
    return data


def write_metrics(run_dir: str | os.PathLike, payload: Mapping[str, Any]) -> None:
    """Write ``metrics.json`` atomically."""
    write_json(Path(run_dir) / METRICS_FILE, dict(payload))


def restore_metrics(run_dir: str | os.PathLike, digest: str) -> list[str]:
    """Repair a run's ``metrics.json`` from its backup copy, never overwriting silently.

    An unreadable ``metrics.json`` is renamed ``metrics.json.unreadable-<time>``; a missing
    one is restored from :data:`METRICS_BACKUP` when that copy holds a finished result of
    this fingerprint (what the run measured is kept, nothing is retrained).

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
        write_metrics(run_dir, backup)
        notes.append(f"{METRICS_FILE} was missing or unreadable: restored from {METRICS_BACKUP}")
    elif notes:
        notes.append(f"no backup of {METRICS_FILE}: recomputing it from the run's checkpoint")
    return notes


def failure_record(
    digest: str | None, returncode: int, error: str, log_tail: list[str]
) -> dict[str, Any]:
    """The ``metrics.json`` of a failed run: exit code, the error's last lines, the log tail."""
    return {
        "status": FAILED,
        "fingerprint": digest,
        "returncode": returncode,
        "error": error,
        "log_tail": log_tail,
    }


def run_status(run_dir: str | os.PathLike, digest: str | None) -> str:
    """What a run folder holds for the config whose fingerprint is ``digest``.

    ``finished`` / ``failed``: its ``metrics.json`` says so for this fingerprint;
    ``mismatch``: it holds a run of another config (or checkpoints without a recorded
    fingerprint); ``partial``: it started (checkpoints) but did not finish; ``pending``:
    nothing yet. The runner and the summary both use this,
    so they always agree.
    """
    run_dir = Path(run_dir)
    recorded = Fingerprint.read(run_dir)
    if recorded is not None and digest is not None and recorded.digest != digest:
        return MISMATCH
    try:
        metrics = read_metrics(run_dir)
    except ValueError:
        metrics = None  # unreadable: the run is treated as not finished (and said so)
    if metrics is not None:
        if digest is not None and metrics.get("fingerprint") != digest:
            return MISMATCH  # the result of another config (or of a seglit without them)
        if metrics.get("status") == FINISHED and metrics.get("best"):
            return FINISHED
        if metrics.get("status") == FAILED:
            return FAILED
    if any((run_dir / CHECKPOINT_DIR).glob("*.ckpt")):
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


# ------------------------------------------------------------------------------- the summary


@dataclass
class Row:
    """One line of the summary: a config aggregated over its seeds."""

    variant: str
    status: str
    runs: int = 0
    finished: int = 0
    mIoU_mean: float | None = None
    mIoU_std: float | None = None
    delta: float | None = None
    delta_ci_low: float | None = None
    delta_ci_high: float | None = None
    delta_ci_seeds: str | None = None
    mde: float | None = None
    seeds_needed: float | None = None
    verdict: str | None = None
    acc: float | None = None
    mIoU_before_crf: float | None = None
    checkerboard: float | None = None
    checkerboard_logits_start: float | None = None
    checkerboard_logits: float | None = None
    checkerboard_logits_std: float | None = None
    checkerboard_logits_ci_low: float | None = None
    checkerboard_logits_ci_high: float | None = None
    checkerboard_logits_mde: float | None = None
    checkerboard_logits_verdict: str | None = None
    params: int | None = None
    gflops: float | None = None
    images_per_sec: float | None = None
    peak_mem_mb: float | None = None
    wall_time_s: float | None = None
    baseline: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    per_class_iou: dict[str, float | None] = field(default_factory=dict)


def row_dict(row: Any) -> dict[str, Any]:
    """A summary row as a dict, from a :class:`Row` or a ``summary.json`` row dict."""
    if isinstance(row, Row):
        return asdict(row)
    if isinstance(row, Mapping):
        return dict(row)
    raise TypeError(f"summary rows must be seglit.artifacts.Row or dicts, got {type(row).__name__}")


def _fmt(value: float | None, digits: int = 4) -> str:
    return (
        "-"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else f"{value:.{digits}f}"
    )


def _fmt_params(value: int | None) -> str:
    if value is None:
        return "-"
    return f"{value / 1e6:.2f}M" if value >= 1e5 else f"{value / 1e3:.1f}K"


def _fmt_seeds(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "-"
    return f"{math.ceil(value)}" if value < 1e4 else ">10000"


def verdict_lines(rows: list[Any]) -> list[str]:
    """One plain sentence per compared row: what its interval and power answer.

    ``answered`` (the 95% interval excludes 0), ``no effect larger than MDE`` (the
    interval lies inside ``±MDE``) or ``inconclusive: about N seeds needed`` (N seed runs per
    side would detect the observed Δ with 80% power).
    """
    lines = []
    for r in map(row_dict, rows):
        if r.get("baseline") or r.get("verdict") is None:
            continue
        interval = f"Δ {r['delta']:+.4f} [{r['delta_ci_low']:+.4f}, {r['delta_ci_high']:+.4f}]"
        mde = f"MDE {r['mde']:.4f}"
        if r["verdict"] == "answered":
            text = f"answered ({interval}, {mde})"
        elif r["verdict"] == "no effect larger than MDE":
            text = f"no effect larger than {r['mde']:.4f} ({interval})"
        else:
            needed = _fmt_seeds(r.get("seeds_needed"))
            needed = (
                "no seed count detects Δ = 0" if needed == "-" else f"about {needed} seeds needed"
            )
            text = f"inconclusive: {needed} ({interval}, {mde})"
        lines.append(f"{r['variant']}: {text}")
    return lines


def checkerboard_table(rows: list[Any]) -> str:
    """The log-probabilities' checkerboard score over training, or ``""`` when no row has it.

    Per config: the mean over seeds at the first validation, at the last (± sd over seeds),
    the last one's difference to the baseline with a 95% bootstrap interval over the paired
    seeds, and what that answers (as :func:`verdict_lines` says it for the mIoU).
    """
    data = [row_dict(r) for r in rows]
    if not any(d.get("checkerboard_logits") is not None for d in data):
        return ""
    lines = [
        "| variant | logit checkerboard, first val | last val (± sd over seeds) "
        "| Δ last vs baseline (95% CI) | verdict |",
        "|---|---|---|---|---|",
    ]
    for d in data:
        end = d.get("checkerboard_logits")
        if end is None:
            lines.append(f"| {d['variant']} | - | - | - | - |")
            continue
        std = d.get("checkerboard_logits_std")
        end_text = f"{end:.5f}" + (f" ± {std:.5f}" if std is not None else "")
        base_end = next((b.get("checkerboard_logits") for b in data if b.get("baseline")), None)
        low, high = d.get("checkerboard_logits_ci_low"), d.get("checkerboard_logits_ci_high")
        if d.get("baseline"):
            delta = "baseline"
        elif low is None or base_end is None:
            delta = "-"
        else:
            delta = f"{end - base_end:+.5f} [{low:+.5f}, {high:+.5f}]"
        start = _fmt(d.get("checkerboard_logits_start"), 5)
        verdict = d.get("checkerboard_logits_verdict") or "-"
        mde = d.get("checkerboard_logits_mde")
        if verdict == "no effect larger than MDE" and mde is not None:
            verdict = f"no difference larger than {mde:.5f}"
        elif verdict == "inconclusive" and mde is not None:
            verdict = f"inconclusive (MDE {mde:.5f})"
        lines.append(f"| {d['variant']} | {start} | {end_text} | {delta} | {verdict} |")
    return "\n".join(lines)


def markdown_table(rows: list[Row]) -> str:
    """The summary as a Markdown table (also what the runner prints).

    ``val mIoU`` shows ``mean ± std`` over seeds when a row has several finished seed runs,
    the plain value otherwise. A ``Δ`` interval whose seed runs could not be paired (the
    two configs' runs with per-image confusion matrices have different seeds) says
    ``(seeds unpaired)``. ``MDE`` is the smallest Δ the row's seeds and images detect with
    80% power at the 95% level, ``seeds for Δ`` the seed runs per side that would detect
    the observed Δ so (:func:`seglit.report.power`). The ``mIoU before CRF`` and
    ``checkerboard`` columns appear when some row has them.
    """
    crf = any(r.mIoU_before_crf is not None for r in rows)
    checker = any(r.checkerboard is not None for r in rows)
    header = ["variant", "status", "val mIoU"]
    header += ["mIoU before CRF"] if crf else []
    header += ["Δ vs baseline (95% CI)", "MDE", "seeds for Δ", "pixel acc"]
    header += ["checkerboard"] if checker else []
    header += ["params", "GFLOPs", "img/s", "peak MB", "wall s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        if r.mIoU_mean is None:
            miou = "-"
        elif r.mIoU_std is None:
            miou = f"{r.mIoU_mean:.4f}"
        else:
            miou = f"{r.mIoU_mean:.4f} ± {r.mIoU_std:.4f}"
        if r.baseline:
            delta = "baseline"
        elif r.delta is None:
            delta = "-"
        elif r.delta_ci_low is None:
            delta = f"{r.delta:+.4f}"
        else:
            delta = f"{r.delta:+.4f} [{r.delta_ci_low:+.4f}, {r.delta_ci_high:+.4f}]"
            delta += " (seeds unpaired)" if r.delta_ci_seeds == "unpaired" else ""
        status = r.status if r.finished == r.runs else f"{r.status} ({r.finished}/{r.runs})"
        cells = [r.variant, status, miou]
        cells += [_fmt(r.mIoU_before_crf)] if crf else []
        cells += [delta, _fmt(r.mde), _fmt_seeds(r.seeds_needed), _fmt(r.acc)]
        cells += [_fmt(r.checkerboard, 5)] if checker else []
        cells += [
            _fmt_params(r.params),
            _fmt(r.gflops, 2),
            _fmt(r.images_per_sec, 1),
            _fmt(r.peak_mem_mb, 0),
            _fmt(r.wall_time_s, 1),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


CSV_FIELDS = [
    "variant",
    "status",
    "runs",
    "finished",
    "mIoU_mean",
    "mIoU_std",
    "delta",
    "delta_ci_low",
    "delta_ci_high",
    "delta_ci_seeds",
    "mde",
    "seeds_needed",
    "verdict",
    "acc",
    "mIoU_before_crf",
    "checkerboard",
    "checkerboard_logits_start",
    "checkerboard_logits",
    "checkerboard_logits_std",
    "checkerboard_logits_ci_low",
    "checkerboard_logits_ci_high",
    "checkerboard_logits_mde",
    "checkerboard_logits_verdict",
    "params",
    "gflops",
    "images_per_sec",
    "peak_mem_mb",
    "wall_time_s",
    "baseline",
]


def write_summary(recipe_dir: Path, recipe_name: str, rows: list[Row]) -> str:
    """Write ``summary.md``, ``summary.csv`` and ``summary.json``.

    Returns:
        The Markdown table followed by :func:`verdict_lines` (what ``summary.md`` holds
        under its title; the runner prints it last).
    """
    table = markdown_table(rows)
    checker = checkerboard_table(rows)
    if checker:
        table += "\n\n" + checker
    verdicts = verdict_lines(rows)
    if verdicts:
        table += "\n\n" + "\n".join(f"- {line}" for line in verdicts)
    atomic_write_text(recipe_dir / SUMMARY_MD, f"# {recipe_name}\n\n{table}\n")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow(asdict(row))
    atomic_write_text(recipe_dir / SUMMARY_CSV, buffer.getvalue())
    payload = {"recipe": recipe_name, "rows": [asdict(r) for r in rows]}
    atomic_write_text(recipe_dir / SUMMARY_JSON, json.dumps(payload, indent=2))
    return table
