"""The summary's rows: one per config, its seed runs aggregated.

One row per config (seeds aggregated): val mIoU mean ± std over seeds, the difference to
the baseline with its 95% interval and power (:mod:`seglit.summary.stats`), pixel accuracy,
mIoU before the dense CRF (when the runs used it), the checkerboard score (and the
log-probabilities' score at the first and last validation), parameters, GFLOPs,
throughput, peak memory, wall time and status. Only results whose fingerprint matches the
variant's are read (:func:`seglit.run_folder.run_status`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from seglit.run_folder import (
    FAILED,
    FINISHED,
    IMAGE_CONFMATS_FILE,
    MISMATCH,
    PARTIAL,
    PENDING,
    RunMetrics,
    read_metrics,
    run_status,
)
from seglit.summary.stats import ONE_SEED, PAIRED, UNPAIRED, delta_interval, power, seed_interval


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
    checkerboard_logits_delta: float | None = None
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
    raise TypeError(f"summary rows must be seglit.summary.Row or dicts, got {type(row).__name__}")


def load_image_confmats(run_dir: Path) -> tuple[list[str], np.ndarray] | None:
    """A run's ``val_image_confmats.npz``: (image names, confmats ``(n, C, C)``), or ``None``."""
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
    confmats: dict[str, dict[int | None, tuple[list[str], np.ndarray]]] = {}
    checker_ends: dict[str, dict[int | None, float]] = {}
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
            courses = {v.seed: course for v, m in finished if (course := checkerboard_course(m))}
            _fill_row(row, [m for _, m in finished], list(courses.values()))
            checker_ends[group] = {seed: end for seed, (_, end) in courses.items()}
            confmats[group] = {  # a run that scored no pixel has no mIoU to compare
                v.seed: cm
                for v, m in finished
                if not math.isnan(m.best_miou)
                and (cm := load_image_confmats(recipe_dir / v.name)) is not None
            }
        rows.append(row)
    base = next((r for r in rows if r.baseline), None)
    for row in rows:
        if base is None or row.mIoU_mean is None or base.mIoU_mean is None:
            continue
        row.delta = row.mIoU_mean - base.mIoU_mean
        if row.baseline:
            continue
        ends, base_ends = checker_ends.get(row.variant, {}), checker_ends.get(base.variant, {})
        shared = sorted(set(ends) & set(base_ends), key=str)
        checker = None
        if len(shared) > 1:  # a seed-paired interval needs two seeds
            checker = seed_interval([ends[s] for s in shared], [base_ends[s] for s in shared])
        if checker is not None:
            row.checkerboard_logits_delta = checker.delta  # over the seeds both measured
            row.checkerboard_logits_ci_low = checker.low
            row.checkerboard_logits_ci_high = checker.high
            row.checkerboard_logits_mde, _, row.checkerboard_logits_verdict = power(
                checker.delta, checker.se, len(shared), checker.low, checker.high, checker.df
            )
        runs, base_runs = confmats.get(row.variant, {}), confmats.get(base.variant, {})
        pair_seeds = set(runs) == set(base_runs)
        if pair_seeds:
            seeds = sorted(runs)
            found = delta_interval(
                [runs[s] for s in seeds], [base_runs[s] for s in seeds], pair_seeds=True
            )
        else:
            found = delta_interval(list(runs.values()), list(base_runs.values()))
        if found is not None:
            row.delta, row.delta_ci_low, row.delta_ci_high = found.delta, found.low, found.high
            seeds_per_side = min(len(runs), len(base_runs))
            row.delta_ci_seeds = PAIRED if pair_seeds else UNPAIRED
            if max(len(runs), len(base_runs)) == 1:
                row.delta_ci_seeds = ONE_SEED  # the interval knows only the images
            row.mde, row.seeds_needed, row.verdict = power(
                found.delta, found.se, seeds_per_side, found.low, found.high, found.df
            )
    return rows


def checkerboard_course(metrics: RunMetrics) -> tuple[float, float] | None:
    """A seed run's log-probability checkerboard score at its first and at its last
    validation (``metrics.json`` history); ``None`` when the run did not measure it."""
    scores = [
        h["checkerboard_logits"]
        for h in metrics.history or []
        if h.get("checkerboard_logits") is not None
    ]
    return (scores[0], scores[-1]) if scores else None


def _fill_row(row: Row, finished: list[RunMetrics], courses: list[tuple[float, float]]) -> None:
    """Aggregate the finished seed runs' metrics (and the checkerboard courses of those
    that measured it, :func:`checkerboard_course`) into ``row``."""
    # a finished run's mIoU is undefined (null) when no pixel of its split was scored
    mious = [m.best_miou for m in finished if not math.isnan(m.best_miou)]
    row.mIoU_mean = float(np.mean(mious)) if mious else None
    row.mIoU_std = float(np.std(mious, ddof=1)) if len(mious) > 1 else None
    row.acc = _mean([m.best.get("acc") for m in finished])
    row.mIoU_before_crf = _mean([m.best.get("mIoU_before_crf") for m in finished])
    row.checkerboard = _mean([m.best.get("checkerboard") for m in finished])
    if courses:
        starts, ends = [start for start, _ in courses], [end for _, end in courses]
        row.checkerboard_logits_start = _mean(starts)
        row.checkerboard_logits = float(np.mean(ends))
        row.checkerboard_logits_std = float(np.std(ends, ddof=1)) if len(ends) > 1 else None
    row.params = finished[0].params
    row.gflops = finished[0].gflops
    row.images_per_sec = _mean([m.train_images_per_sec for m in finished])
    row.peak_mem_mb = _mean([m.peak_mem_mb for m in finished])
    row.wall_time_s = float(sum(m.wall_time_s or 0.0 for m in finished))
    classes = finished[0].best.get("IoU", {})
    row.per_class_iou = {
        c: _mean([(m.best.get("IoU") or {}).get(c) for m in finished]) for c in classes
    }
