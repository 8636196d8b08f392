"""Aggregate finished variants into summary rows (:func:`seglit.artifacts.write_summary`).

One row per config (seeds aggregated): val mIoU mean ± std over seeds, the difference to
the baseline with a 95% confidence interval from a two-level bootstrap (validation images
paired across the two sides, then seed runs, paired when both configs finished the same
seeds), pixel accuracy, mIoU before the dense CRF (when the runs used it), the
checkerboard score, parameters, GFLOPs, throughput, peak memory, wall time and status.
Only results whose fingerprint matches the variant's are read
(:func:`seglit.artifacts.run_status`).
"""

from __future__ import annotations

from collections.abc import Mapping
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
    Row,
    read_metrics,
    run_status,
)

BOOTSTRAP_SAMPLES = 1000


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
    pair_seeds: bool = False,
) -> tuple[float, float, float] | None:
    """Difference of mean mIoU (variant - baseline) with a 95% two-level bootstrap interval.

    Each bootstrap sample resamples, with replacement, (1) the validation images, the same
    images for both sides (paired), and (2) the seed runs. With ``pair_seeds`` the two sides
    ran the same seeds, given in the same order, and each draw picks one seed for both
    sides (``k`` draws of the ``k`` seeds), so what a seed does to both configs alike (its
    data order, its initialisation) cancels in the difference. Without it each side's runs
    are drawn on their own (``k`` of the variant's ``k``, ``m`` of the baseline's ``m``).
    A side's value is the mean over its drawn runs of the mIoU of the run's summed
    per-image confusion matrices under the image weights. The interval is the 2.5-97.5
    percentile of the differences, so it reflects seed-to-seed variance as well as which
    images happened to be in the split; with one seed per side it is the paired image
    bootstrap.

    Args:
        runs: Per seed run of the variant: (image names, confmats ``(n, C, C)``).
        baseline_runs: The same for the baseline.
        samples: Number of bootstrap resamples.
        seed: Seed of the resampling.
        pair_seeds: ``runs[i]`` and ``baseline_runs[i]`` come from the same seed.

    Returns:
        ``(delta, ci_low, ci_high)`` (delta on the observed data), or ``None`` if the runs
        scored different image sets.

    Raises:
        ValueError: ``pair_seeds`` with sides of different lengths.
    """
    if not runs or not baseline_runs:
        return None
    if pair_seeds and len(runs) != len(baseline_runs):
        raise ValueError(
            f"pair_seeds needs one baseline run per variant run, got {len(runs)} and "
            f"{len(baseline_runs)}"
        )
    names = sorted(runs[0][0])
    aligned = []
    for run_names, confmats in runs + baseline_runs:
        if sorted(run_names) != names:
            return None
        aligned.append(confmats[np.argsort(run_names)].astype(np.float64))
    n, k, m = len(names), len(runs), len(baseline_runs)
    rng = np.random.default_rng(seed)
    weights = bootstrap_image_weights(n, samples, rng)
    picks_a = bootstrap_seed_picks(k, samples, rng)
    picks_b = picks_a if pair_seeds else bootstrap_seed_picks(m, samples, rng)
    per_run = np.stack([weighted_miou(weights, cm) for cm in aligned], 1)  # (samples + 1, runs)
    rows = np.arange(samples + 1)[:, None]
    side_a = per_run[:, :k][rows, picks_a].mean(1)
    side_b = per_run[:, k:][rows, picks_b].mean(1)
    diffs = side_a - side_b
    low, high = np.percentile(diffs[1:], [2.5, 97.5])
    return float(diffs[0]), float(low), float(high)


def bootstrap_image_weights(n: int, samples: int, rng: np.random.Generator) -> np.ndarray:
    """Image weights ``(samples + 1, n)``: row 0 all ones (the observed data), then for each
    resample how often each of the ``n`` images was drawn (``n`` draws with replacement)."""
    draws = [np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(samples)]
    return np.concatenate([np.ones((1, n)), np.stack(draws)])


def bootstrap_seed_picks(k: int, samples: int, rng: np.random.Generator) -> np.ndarray:
    """Seed-run indices ``(samples + 1, k)``: row 0 every run once, then ``k`` draws with
    replacement per resample."""
    return np.concatenate([np.arange(k)[None], rng.integers(0, k, (samples, k))])


def weighted_miou(weights: np.ndarray, confmats: np.ndarray) -> np.ndarray:
    """mIoU of per-image confusion matrices ``(n, C, C)`` summed under each row of
    ``weights`` ``(b, n)``: shape ``(b,)``."""
    return mean_iou(np.einsum("bn,nij->bij", weights, confmats))


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
            confmats[group] = {
                v.seed: cm
                for v, _ in finished
                if (cm := load_image_confmats(recipe_dir / v.name)) is not None
            }
        rows.append(row)
    base = next((r for r in rows if r.baseline), None)
    for row in rows:
        if base is None or row.mIoU_mean is None or base.mIoU_mean is None:
            continue
        row.delta = row.mIoU_mean - base.mIoU_mean
        if row.baseline:
            continue
        runs, base_runs = confmats.get(row.variant, {}), confmats.get(base.variant, {})
        pair_seeds = set(runs) == set(base_runs)
        if pair_seeds:
            seeds = sorted(runs)
            result = paired_bootstrap_delta(
                [runs[s] for s in seeds], [base_runs[s] for s in seeds], pair_seeds=True
            )
        else:
            result = paired_bootstrap_delta(list(runs.values()), list(base_runs.values()))
        if result is not None:
            row.delta, row.delta_ci_low, row.delta_ci_high = result
            row.delta_ci_seeds = "paired" if pair_seeds else "unpaired"
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
