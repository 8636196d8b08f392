"""Collect finished variants into ``summary.{md,csv,json}``.

One row per config (seeds aggregated): val mIoU mean ± std over seeds, the difference to
the baseline with a 95% confidence interval from a two-level bootstrap (seed runs, then
validation images paired across the two sides), pixel accuracy, mIoU before the dense CRF
(when the runs used it), the checkerboard score, parameters, GFLOPs, throughput, peak
memory, wall time and status. Only results whose fingerprint matches the variant's are
read (:func:`seglit.artifacts.run_status`).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from seglit.artifacts import (
    FAILED,
    FINISHED,
    IMAGE_CONFMATS_FILE,
    MISMATCH,
    PARTIAL,
    PENDING,
    SUMMARY_CSV,
    SUMMARY_JSON,
    SUMMARY_MD,
    atomic_write_text,
    read_metrics,
    run_status,
)

BOOTSTRAP_SAMPLES = 1000


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
    acc: float | None = None
    mIoU_before_crf: float | None = None
    checkerboard: float | None = None
    params: int | None = None
    gflops: float | None = None
    images_per_sec: float | None = None
    peak_mem_mb: float | None = None
    wall_time_s: float | None = None
    baseline: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    per_class_iou: dict[str, float | None] = field(default_factory=dict)


def mean_iou(confmats: np.ndarray) -> np.ndarray:
    """mIoU of confusion matrices ``(..., C, C)``: mean over classes with a non-empty union."""
    tp = np.diagonal(confmats, axis1=-2, axis2=-1).astype(np.float64)
    union = confmats.sum(-1) + confmats.sum(-2) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / np.where(union > 0, union, 1), np.nan)
    return np.nanmean(iou, axis=-1)


def paired_bootstrap_delta(
    runs: list[tuple[list[str], np.ndarray]],
    baseline_runs: list[tuple[list[str], np.ndarray]],
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
) -> tuple[float, float, float] | None:
    """Difference of mean mIoU (variant - baseline) with a 95% two-level bootstrap interval.

    Each bootstrap sample resamples, with replacement, (1) the seed runs of each side
    (``k`` of the variant's ``k``, ``m`` of the baseline's ``m``) and (2) the validation
    images, the same images for both sides (paired). A side's value is the mean over its
    resampled seed runs of the mIoU of the run's summed per-image confusion matrices under
    the image weights. The interval is the 2.5-97.5 percentile of the differences, so it
    reflects seed-to-seed variance as well as which images happened to be in the split;
    with one seed per side it is the paired image bootstrap.

    Args:
        runs: Per seed run of the variant: (image names, confmats ``(n, C, C)``).
        baseline_runs: The same for the baseline.
        samples: Number of bootstrap resamples.
        seed: Seed of the resampling.

    Returns:
        ``(delta, ci_low, ci_high)`` (delta on the observed data), or ``None`` if the runs
        scored different image sets.
    """
    if not runs or not baseline_runs:
        return None
    names = sorted(runs[0][0])
    aligned = []
    for run_names, confmats in runs + baseline_runs:
        if sorted(run_names) != names:
            return None
        aligned.append(confmats[np.argsort(run_names)].astype(np.float64))
    n, k, m = len(names), len(runs), len(baseline_runs)
    rng = np.random.default_rng(seed)
    weights = np.concatenate(
        [
            np.ones((1, n)),
            np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(samples)]),
        ]
    )
    picks_a = np.concatenate([np.arange(k)[None], rng.integers(0, k, (samples, k))])
    picks_b = np.concatenate([np.arange(m)[None], rng.integers(0, m, (samples, m))])
    # mIoU of every run under every image weighting: (samples + 1, runs)
    per_run = np.stack([mean_iou(np.einsum("bn,nij->bij", weights, cm)) for cm in aligned], 1)
    rows = np.arange(samples + 1)[:, None]
    side_a = per_run[:, :k][rows, picks_a].mean(1)
    side_b = per_run[:, k:][rows, picks_b].mean(1)
    diffs = side_a - side_b
    low, high = np.percentile(diffs[1:], [2.5, 97.5])
    return float(diffs[0]), float(low), float(high)


def _load_image_confmats(run_dir: Path) -> tuple[list[str], np.ndarray] | None:
    path = run_dir / IMAGE_CONFMATS_FILE
    if not path.is_file():
        return None
    with np.load(path) as data:
        return [str(n) for n in data["names"]], data["confmats"]


def _mean(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def _group_status(statuses: list[str]) -> str:
    if all(st == FINISHED for st in statuses):
        return FINISHED
    if FAILED in statuses:
        return FAILED
    if MISMATCH in statuses:
        return MISMATCH
    return PARTIAL if FINISHED in statuses or PARTIAL in statuses else PENDING


def build_rows(
    recipe_dir: Path,
    variants: list[Any],
    baseline_group: str,
    fingerprints: Mapping[str, str] | None = None,
) -> list[Row]:
    """Aggregate each config's seed runs found under ``recipe_dir``.

    Args:
        recipe_dir: ``<out>/<recipe name>``.
        variants: The recipe's :class:`~seglit.recipe.Variant` list.
        baseline_group: The baseline config's name.
        fingerprints: Variant name -> the fingerprint its result must carry; a run folder
            holding another config's result counts as ``mismatch``, not as this variant's.
            ``None`` reads whatever is there (for reports on old folders).
    """
    groups: dict[str, list[Any]] = {}
    for variant in variants:
        groups.setdefault(variant.group, []).append(variant)
    confmats: dict[str, list[tuple[list[str], np.ndarray]]] = {}
    rows = []
    for group, members in groups.items():
        statuses, finished = [], []
        for v in members:
            digest = None if fingerprints is None else fingerprints.get(v.name)
            status = run_status(recipe_dir / v.name, digest)
            statuses.append(status)
            if status == FINISHED:
                finished.append((v, read_metrics(recipe_dir / v.name)))
        row = Row(
            variant=group,
            status=_group_status(statuses),
            runs=len(members),
            finished=len(finished),
            baseline=group == baseline_group,
            labels=dict(members[0].labels),
        )
        if finished:
            _fill_row(row, [m for _, m in finished])
            confmats[group] = [
                cm
                for v, _ in finished
                if (cm := _load_image_confmats(recipe_dir / v.name)) is not None
            ]
        rows.append(row)
    base = next((r for r in rows if r.baseline), None)
    for row in rows:
        if base is None or row.mIoU_mean is None or base.mIoU_mean is None:
            continue
        row.delta = row.mIoU_mean - base.mIoU_mean
        if row.baseline:
            continue
        result = paired_bootstrap_delta(
            confmats.get(row.variant, []), confmats.get(base.variant, [])
        )
        if result is not None:
            row.delta, row.delta_ci_low, row.delta_ci_high = result
    return rows


def _fill_row(row: Row, finished: list[dict[str, Any]]) -> None:
    """Aggregate the finished seed runs' metrics into ``row``."""
    mious = [m["best"]["mIoU"] for m in finished]
    row.mIoU_mean = float(np.mean(mious))
    row.mIoU_std = float(np.std(mious, ddof=1)) if len(mious) > 1 else None
    row.acc = _mean([m["best"].get("acc") for m in finished])
    row.mIoU_before_crf = _mean([m["best"].get("mIoU_before_crf") for m in finished])
    row.checkerboard = _mean([m["best"].get("checkerboard") for m in finished])
    row.params = finished[0].get("params")
    row.gflops = finished[0].get("gflops")
    row.images_per_sec = _mean([m.get("train_images_per_sec") for m in finished])
    row.peak_mem_mb = _mean([m.get("peak_mem_mb") for m in finished])
    row.wall_time_s = float(sum(m.get("wall_time_s") or 0.0 for m in finished))
    classes = finished[0]["best"].get("IoU", {})
    row.per_class_iou = {c: _mean([m["best"]["IoU"].get(c) for m in finished]) for c in classes}


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


def markdown_table(rows: list[Row]) -> str:
    """The summary as a Markdown table (also what the runner prints).

    ``val mIoU`` shows ``mean ± std`` over seeds when a row has several finished seed runs,
    the plain value otherwise. The ``mIoU before CRF`` and ``checkerboard`` columns appear
    when some row has them.
    """
    crf = any(r.mIoU_before_crf is not None for r in rows)
    checker = any(r.checkerboard is not None for r in rows)
    header = ["variant", "status", "val mIoU"]
    header += ["mIoU before CRF"] if crf else []
    header += ["Δ vs baseline (95% CI)", "pixel acc"]
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
        status = r.status if r.finished == r.runs else f"{r.status} ({r.finished}/{r.runs})"
        cells = [r.variant, status, miou]
        cells += [_fmt(r.mIoU_before_crf)] if crf else []
        cells += [delta, _fmt(r.acc)]
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
    "acc",
    "mIoU_before_crf",
    "checkerboard",
    "params",
    "gflops",
    "images_per_sec",
    "peak_mem_mb",
    "wall_time_s",
    "baseline",
]


def write_summary(recipe_dir: Path, recipe_name: str, rows: list[Row]) -> str:
    """Write ``summary.md``, ``summary.csv`` and ``summary.json``; return the Markdown table."""
    table = markdown_table(rows)
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
