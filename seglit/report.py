"""Collect finished variants into ``summary.{md,csv,json}``.

One row per config (seeds aggregated): val mIoU mean ± std over seeds, the difference to
the baseline with a 95% paired-bootstrap confidence interval over validation images,
pixel accuracy, parameters, GFLOPs, throughput, peak memory, wall time and status.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from seglit.callbacks import IMAGE_CONFMATS_FILE, METRICS_FILE

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
    params: int | None = None
    gflops: float | None = None
    images_per_sec: float | None = None
    peak_mem_mb: float | None = None
    wall_time_s: float | None = None
    baseline: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    per_class_iou: dict[str, float | None] = field(default_factory=dict)


def read_metrics(run_dir: Path) -> dict[str, Any] | None:
    """The run's ``metrics.json`` (``None`` if the run never wrote one)."""
    path = run_dir / METRICS_FILE
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


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
    """Difference of mean mIoU (variant - baseline) with a 95% paired bootstrap CI.

    Images are resampled with replacement, the same images for both sides; each side's mIoU
    is recomputed from the summed per-image confusion matrices of each of its seed runs and
    averaged over seeds.

    Args:
        runs: Per seed run of the variant: (image names, confmats ``(n, C, C)``).
        baseline_runs: The same for the baseline.
        samples: Number of bootstrap resamples.
        seed: Seed of the resampling.

    Returns:
        ``(delta, ci_low, ci_high)``, or ``None`` if the runs scored different image sets.
    """
    if not runs or not baseline_runs:
        return None
    names = runs[0][0]
    aligned = []
    for run_names, confmats in runs + baseline_runs:
        if sorted(run_names) != sorted(names):
            return None
        order = np.argsort(run_names)
        aligned.append(confmats[order].astype(np.float64))
    n = len(names)
    rng = np.random.default_rng(seed)
    weights = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(samples)])
    weights = np.concatenate([np.ones((1, n)), weights]).astype(np.float64)  # row 0: observed

    def side(cms: list[np.ndarray]) -> np.ndarray:
        per_seed = [mean_iou(np.einsum("bn,nij->bij", weights, cm)) for cm in cms]
        return np.mean(per_seed, axis=0)

    k = len(runs)
    diffs = side(aligned[:k]) - side(aligned[k:])
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


def build_rows(recipe_dir: Path, variants: list[Any], baseline_group: str) -> list[Row]:
    """Aggregate each config's seed runs found under ``recipe_dir``.

    Args:
        recipe_dir: ``<out>/<recipe name>``.
        variants: The recipe's :class:`~seglit.recipe.Variant` list.
        baseline_group: The baseline config's name.
    """
    groups: dict[str, list[Any]] = {}
    for variant in variants:
        groups.setdefault(variant.group, []).append(variant)
    confmats: dict[str, list[tuple[list[str], np.ndarray]]] = {}
    rows = []
    for group, members in groups.items():
        metrics = [read_metrics(recipe_dir / v.name) for v in members]
        finished = [m for m in metrics if m and m.get("status") == "finished" and m.get("best")]
        statuses = {m.get("status") for m in metrics if m} | (
            {"pending"} if None in metrics else set()
        )
        if len(finished) == len(members):
            status = "finished"
        elif "failed" in statuses:
            status = "failed"
        else:
            status = "partial" if finished else "pending"
        row = Row(
            variant=group,
            status=status,
            runs=len(members),
            finished=len(finished),
            baseline=group == baseline_group,
            labels=dict(members[0].labels),
        )
        if finished:
            mious = [m["best"]["mIoU"] for m in finished]
            row.mIoU_mean = float(np.mean(mious))
            row.mIoU_std = float(np.std(mious, ddof=1)) if len(mious) > 1 else 0.0
            row.acc = _mean([m["best"].get("acc") for m in finished])
            row.params = finished[0].get("params")
            row.gflops = finished[0].get("gflops")
            row.images_per_sec = _mean([m.get("train_images_per_sec") for m in finished])
            row.peak_mem_mb = _mean([m.get("peak_mem_mb") for m in finished])
            row.wall_time_s = float(sum(m.get("wall_time_s") or 0.0 for m in finished))
            classes = finished[0]["best"].get("IoU", {})
            row.per_class_iou = {
                c: _mean([m["best"]["IoU"].get(c) for m in finished]) for c in classes
            }
            confmats[group] = [
                cm
                for v, m in zip(members, metrics)
                if m in finished and (cm := _load_image_confmats(recipe_dir / v.name)) is not None
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
    """The summary as a Markdown table (also what the runner prints)."""
    header = [
        "variant",
        "status",
        "val mIoU",
        "Δ vs baseline (95% CI)",
        "pixel acc",
        "params",
        "GFLOPs",
        "img/s",
        "peak MB",
        "wall s",
    ]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        miou = "-" if r.mIoU_mean is None else f"{r.mIoU_mean:.4f} ± {r.mIoU_std:.4f}"
        if r.baseline:
            delta = "baseline"
        elif r.delta is None:
            delta = "-"
        elif r.delta_ci_low is None:
            delta = f"{r.delta:+.4f}"
        else:
            delta = f"{r.delta:+.4f} [{r.delta_ci_low:+.4f}, {r.delta_ci_high:+.4f}]"
        status = r.status if r.finished == r.runs else f"{r.status} ({r.finished}/{r.runs})"
        cells = [
            r.variant,
            status,
            miou,
            delta,
            _fmt(r.acc),
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
    "params",
    "gflops",
    "images_per_sec",
    "peak_mem_mb",
    "wall_time_s",
    "baseline",
]


def write_summary(recipe_dir: Path, recipe_name: str, rows: list[Row]) -> str:
    """Write ``summary.md``, ``summary.csv`` and ``summary.json``; return the Markdown table."""
    recipe_dir.mkdir(parents=True, exist_ok=True)
    table = markdown_table(rows)
    _atomic_write(recipe_dir / "summary.md", f"# {recipe_name}\n\n{table}\n")
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow(asdict(row))
    _atomic_write(recipe_dir / "summary.csv", buffer.getvalue())
    payload = {"recipe": recipe_name, "rows": [asdict(r) for r in rows]}
    _atomic_write(recipe_dir / "summary.json", json.dumps(payload, indent=2))
    return table


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
