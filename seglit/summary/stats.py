"""The summary's statistics: mIoU differences with bootstrap intervals, and their power.

The difference of a config to the baseline gets a 95% confidence interval from a two-level
bootstrap (validation images paired across the two sides, then seed runs, paired when both
configs finished the same seeds) and its power: the minimum detectable effect at 80% power,
the seeds needed to detect the observed difference, and the verdict (answered, no effect
larger than the MDE, or inconclusive). numpy only: the summary imports neither torch nor
Lightning. :func:`mean_iou` takes the per-class IoU from :func:`seglit.iou.class_iou`, the
formula :func:`seglit.metrics.metrics_from_confmat` applies to torch tensors.
"""

from __future__ import annotations

import numpy as np

from seglit.iou import class_iou

BOOTSTRAP_SAMPLES = 1000
Z_95 = 1.959964  # two-sided 5% level
Z_80 = 0.841621  # 80% power
ANSWERED = "answered"
NO_LARGER_EFFECT = "no effect larger than MDE"
INCONCLUSIVE = "inconclusive"


def mean_iou(confmats: np.ndarray) -> np.ndarray:
    """mIoU of confusion matrices ``(..., C, C)``: mean over classes with a non-empty union."""
    return np.nanmean(class_iou(np.asarray(confmats, dtype=np.float64), np), axis=-1)


def bootstrap_delta_draws(
    runs: list[tuple[list[str], np.ndarray]],
    baseline_runs: list[tuple[list[str], np.ndarray]],
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
    pair_seeds: bool = False,
) -> np.ndarray | None:
    """Bootstrap draws of the difference of mean mIoU (variant - baseline), two levels.

    Each bootstrap sample resamples, with replacement, (1) the validation images, the same
    images for both sides (paired), and (2) the seed runs. With ``pair_seeds`` the two sides
    ran the same seeds, given in the same order, and each draw picks one seed for both
    sides (``k`` draws of the ``k`` seeds), so what a seed does to both configs alike (its
    data order, its initialisation) cancels in the difference. Without it each side's runs
    are drawn on their own (``k`` of the variant's ``k``, ``m`` of the baseline's ``m``).
    A side's value is the mean over its drawn runs of the mIoU of the run's summed
    per-image confusion matrices under the image weights. The 95% interval is the 2.5-97.5
    percentile of the draws (:func:`bootstrap_interval`), so it reflects seed-to-seed
    variance as well as which images happened to be in the split; with one seed per side
    it is the paired image bootstrap.

    Args:
        runs: Per seed run of the variant: (image names, confmats ``(n, C, C)``).
        baseline_runs: The same for the baseline.
        samples: Number of bootstrap resamples.
        seed: Seed of the resampling.
        pair_seeds: ``runs[i]`` and ``baseline_runs[i]`` come from the same seed.

    Returns:
        Shape ``(samples + 1,)``: element 0 the observed difference, then one difference
        per bootstrap resample; ``None`` if the runs scored different image sets.

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


def bootstrap_interval(draws: np.ndarray) -> tuple[float, float, float]:
    """``(delta, ci_low, ci_high)`` of :func:`bootstrap_delta_draws`' draws: the observed
    difference and the 2.5-97.5 percentile of the resampled ones (a 95% interval)."""
    low, high = np.percentile(draws[1:], [2.5, 97.5])
    return float(draws[0]), float(low), float(high)


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
        MDE"`` when it lies inside ``[-MDE, +MDE]`` (so two sides equal on every draw, an
        interval and MDE of exactly 0, say no difference), ``"inconclusive"`` otherwise.
    """
    low = delta - Z_95 * se if low is None else low
    high = delta + Z_95 * se if high is None else high
    mde = (Z_95 + Z_80) * se
    needed = None if delta == 0 else float(max(seeds, 1) * (mde / abs(delta)) ** 2)
    if low > 0 or high < 0:
        verdict = ANSWERED
    elif -mde <= low and high <= mde:
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
    return (*bootstrap_interval(means), float(np.std(means[1:], ddof=1)))
