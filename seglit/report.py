"""Aggregate finished variants into summary rows (:func:`seglit.artifacts.write_summary`).

One row per config (seeds aggregated): val mIoU mean ± std over seeds, the difference to
the baseline with a 95% confidence interval from a two-level bootstrap (validation images
paired across the two sides, then seed runs, paired when both configs finished the same
seeds), its power (the minimum detectable effect at 80% power, the seeds needed to detect
the observed difference, and the verdict: answered, no effect larger than the MDE, or
inconclusive), pixel accuracy, mIoU before the dense CRF (when the runs used it), the
checkerboard score (and the log-probabilities' score at the first and last validation),
parameters, GFLOPs, throughput, peak memory, wall time and status.
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
Z_95 = 1.959964  # two-sided 5% level
Z_80 = 0.841621  # 80% power
ANSWERED = "answered"
NO_LARGER_EFFECT = "no effect larger than MDE"
INCONCLUSIVE = "inconclusive"


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
    diffs = bootstrap_delta_draws(runs, baseline_runs, samples, seed, pair_seeds)
    if diffs is None:
        return None
    low, high = np.percentile(diffs[1:], [2.5, 97.5])
    return float(diffs[0]), float(low), float(high)


def bootstrap_delta_draws(
    runs: list[tuple[list[str], np.ndarray]],
    baseline_runs: list[tuple[list[str], np.ndarray]],
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
    pair_seeds: bool = False,
) -> np.ndarray | None:
    """The draws behind :func:`paired_bootstrap_delta`: shape ``(samples + 1,)``, element 0
    the observed difference, then one difference per bootstrap resample (same arguments,
    same draws). ``None`` if the runs scored different image sets.

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
    return side_a - side_b


def power(
    delta: float, se: float, seeds: int, low: float | None = None, high: float | None = None
) -> tuple[float, float | None, str]:
    """Minimum detectable effect, seeds needed and the verdict of one row.

    The minimum detectable effect (MDE) is the difference a paired comparison with this
    spread detects with 80% power at the 5% two-sided level: ``(1.96 + 0.84) * se``, where
    ``se`` is the standard error of the mean difference (the bootstrap draws' standard
    deviation). The seeds needed to detect the observed difference scale as
    ``seeds * (MDE / |delta|)^2`` (the standard error shrinks as one over the root of the
    seed count; this treats the image term as shrinking with it too, so it is a lower
    bound when the validation images, not the seeds, dominate the spread).

    Args:
        delta: The observed difference.
        se: Its standard error.
        seeds: Seed runs per side behind ``se``.
        low: Lower end of the 95% interval (``None``: use ``delta -/+ 1.96 se``).
        high: Upper end of the 95% interval.

    Returns:
        ``(mde, seeds_needed, verdict)``: ``seeds_needed`` is ``None`` when ``delta`` is 0;
        ``verdict`` is ``"answered"`` when the interval excludes 0, ``"no effect larger than
        MDE"`` when it lies inside ``(-MDE, +MDE)``, ``"inconclusive"`` otherwise.
    """
    low = delta - Z_95 * se if low is None else low
    high = delta + Z_95 * se if high is None else high
    mde = (Z_95 + Z_80) * se
    needed = None if delta == 0 else float(max(seeds, 1) * (mde / abs(delta)) ** 2)
    if low > 0 or high < 0:
        verdict = ANSWERED
    elif -mde < low and high < mde:
        verdict = NO_LARGER_EFFECT
    else:
        verdict = INCONCLUSIVE
    return float(mde), needed, verdict


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
            _fill_row(row, [m for _, m in finished])
            checker_ends[group] = {
                v.seed: ends[0] for v, m in finished if (ends := checkerboard_course([m])[1])
            }
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
        ends, base_ends = checker_ends.get(row.variant, {}), checker_ends.get(base.variant, {})
        shared = sorted(set(ends) & set(base_ends), key=str)
        if len(shared) > 1:
            delta, low, high, se = seed_bootstrap_delta(
                [ends[s] for s in shared], [base_ends[s] for s in shared]
            )
            row.checkerboard_logits_ci_low, row.checkerboard_logits_ci_high = low, high
            row.checkerboard_logits_mde, _, row.checkerboard_logits_verdict = power(
                delta, se, len(shared), low, high
            )
        runs, base_runs = confmats.get(row.variant, {}), confmats.get(base.variant, {})
        pair_seeds = set(runs) == set(base_runs)
        if pair_seeds:
            seeds = sorted(runs)
            diffs = bootstrap_delta_draws(
                [runs[s] for s in seeds], [base_runs[s] for s in seeds], pair_seeds=True
            )
        else:
            diffs = bootstrap_delta_draws(list(runs.values()), list(base_runs.values()))
        if diffs is not None:
            low, high = np.percentile(diffs[1:], [2.5, 97.5])
            row.delta, row.delta_ci_low, row.delta_ci_high = (
                float(diffs[0]),
                float(low),
                float(high),
            )
            row.delta_ci_seeds = "paired" if pair_seeds else "unpaired"
            se = float(np.std(diffs[1:], ddof=1))
            seeds_per_side = min(len(runs), len(base_runs))
            row.mde, row.seeds_needed, row.verdict = power(
                row.delta, se, seeds_per_side, row.delta_ci_low, row.delta_ci_high
            )
    return rows


def checkerboard_course(finished: list[dict[str, Any]]) -> tuple[list[float], list[float]]:
    """Per seed run, the log-probabilities' checkerboard score at its first and at its last
    validation (``metrics.json`` history); runs that did not measure it are left out."""
    starts, ends = [], []
    for metrics in finished:
        scores = [
            h["checkerboard_logits"]
            for h in metrics.get("history") or []
            if h.get("checkerboard_logits") is not None
        ]
        if scores:
            starts.append(scores[0])
            ends.append(scores[-1])
    return starts, ends


def seed_bootstrap_delta(
    values: list[float], baseline: list[float], samples: int = BOOTSTRAP_SAMPLES, seed: int = 0
) -> tuple[float, float, float, float]:
    """Mean difference of per-seed values (paired by position) with a 95% bootstrap interval
    over the seeds (``k`` draws of the ``k`` pairs).

    Returns:
        ``(delta, ci_low, ci_high, se)``: ``se`` is the draws' standard deviation.
    """
    diffs = np.asarray(values, dtype=np.float64) - np.asarray(baseline, dtype=np.float64)
    picks = bootstrap_seed_picks(len(diffs), samples, np.random.default_rng(seed))
    means = diffs[picks].mean(1)
    low, high = np.percentile(means[1:], [2.5, 97.5])
    return float(means[0]), float(low), float(high), float(np.std(means[1:], ddof=1))


def _fill_row(row: Row, finished: list[dict[str, Any]]) -> None:
    """Aggregate the finished seed runs' metrics into ``row``."""
    mious = [m["best"]["mIoU"] for m in finished]
    row.mIoU_mean = float(np.mean(mious))
    row.mIoU_std = float(np.std(mious, ddof=1)) if len(mious) > 1 else None
    row.acc = _mean([m["best"].get("acc") for m in finished])
    row.mIoU_before_crf = _mean([m["best"].get("mIoU_before_crf") for m in finished])
    row.checkerboard = _mean([m["best"].get("checkerboard") for m in finished])
    starts, ends = checkerboard_course(finished)
    if ends:
        row.checkerboard_logits_start = _mean(starts)
        row.checkerboard_logits = float(np.mean(ends))
        row.checkerboard_logits_std = float(np.std(ends, ddof=1)) if len(ends) > 1 else None
    row.params = finished[0].get("params")
    row.gflops = finished[0].get("gflops")
    row.images_per_sec = _mean([m.get("train_images_per_sec") for m in finished])
    row.peak_mem_mb = _mean([m.get("peak_mem_mb") for m in finished])
    row.wall_time_s = float(sum(m.get("wall_time_s") or 0.0 for m in finished))
    classes = finished[0]["best"].get("IoU", {})
    row.per_class_iou = {c: _mean([m["best"]["IoU"].get(c) for m in finished]) for c in classes}
