"""The summary's statistics: mIoU differences with 95% intervals, and their power.

The difference of a config to the baseline is the mean over its seed runs minus the
baseline's, each run scored by dataset-level mIoU on the validation images. Its standard
error has two parts, treated as independent (noise particular to one run on one image
shows in both, so the interval is somewhat conservative where the images dominate):

* the seeds: the spread of the per-seed differences (seeds paired, when both configs
  finished the same seeds: what a seed does to both configs alike cancels) or of each
  side's per-seed mIoU (unpaired), over the number of seeds;
* the images: a bootstrap over the validation images, paired across the two sides and all
  runs, of the seed-averaged difference (which images happened to be in the split).

The 95% interval is ``delta ± t * se`` with Student's ``t`` at the Welch-Satterthwaite
degrees of freedom of the two parts (``k - 1`` for ``k`` paired seeds, ``n - 1`` for ``n``
images): with few seeds the seed part dominates and ``t`` is large, as it must be (a
percentile bootstrap over 3 seeds cannot be wider than their range and held a null
difference in only 75% of simulated experiments; ``docs/interval_coverage.py``). With
seed-paired runs and no image-to-image spread it is the paired t interval
(``scipy.stats.ttest_rel``'s; unpaired: Welch's ``ttest_ind``'s; one run against several:
the pooled ``ttest_ind``'s). With one seed per side the interval knows nothing of
training noise (``delta_ci_seeds: "one seed"``).

The power of a row: the minimum detectable effect at 80% power, the seeds needed to detect
the observed difference, and the verdict (answered, no effect larger than the MDE, or
inconclusive). numpy and scipy only: the summary imports neither torch nor Lightning.
:func:`mean_iou` takes the per-class IoU from :func:`seglit.iou.class_iou`, the formula
:func:`seglit.metrics.metrics_from_confmat` applies to torch tensors.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy.special import stdtrit  # Student's t quantile (lighter than scipy.stats)

from seglit.iou import class_iou

BOOTSTRAP_SAMPLES = 1000
LEVEL = 0.95  # two-sided confidence level of the intervals
POWER = 0.80  # the power the minimum detectable effect is quoted at
ANSWERED = "answered"
NO_LARGER_EFFECT = "no effect larger than MDE"
INCONCLUSIVE = "inconclusive"
PAIRED, UNPAIRED, ONE_SEED = "paired", "unpaired", "one seed"


@dataclass(frozen=True)
class Interval:
    """A difference with its 95% interval ``delta ± t(df) * se``."""

    delta: float
    low: float
    high: float
    se: float
    """Standard error of ``delta``."""
    df: float
    """Degrees of freedom of ``t`` (``inf``: the normal quantile)."""


def mean_iou(confmats: np.ndarray) -> np.ndarray:
    """mIoU of confusion matrices ``(..., C, C)``: mean over classes with a non-empty union
    (NaN for a matrix with no scored pixel)."""
    iou = class_iou(np.asarray(confmats, dtype=np.float64), np)
    with warnings.catch_warnings():  # every class empty: NaN, the documented "undefined"
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(iou, axis=-1)


def t_interval(delta: float, parts: list[tuple[float, float]]) -> Interval | None:
    """The 95% interval of ``delta`` from independent variance parts.

    Args:
        delta: The estimate.
        parts: ``(variance, degrees of freedom)`` of each independent part of ``delta``'s
            variance; their sum is the variance, and the Welch-Satterthwaite formula
            ``(sum v)^2 / sum(v^2 / df)`` gives the degrees of freedom.

    Returns:
        The interval; ``low == high == delta`` when every part is 0; ``None`` when nothing
        measures the spread (no part) or a part or ``delta`` is undefined (NaN).
    """
    variance = float(sum(v for v, _ in parts))
    if not parts or not math.isfinite(variance) or not math.isfinite(delta):
        return None
    if variance <= 0:
        return Interval(delta, delta, delta, 0.0, math.inf)
    df = variance**2 / sum(v**2 / d for v, d in parts if v > 0)
    half = float(stdtrit(df, 0.5 + LEVEL / 2)) * math.sqrt(variance)
    return Interval(delta, delta - half, delta + half, math.sqrt(variance), float(df))


def seed_part(
    side_a: np.ndarray, side_b: np.ndarray, pair_seeds: bool
) -> list[tuple[float, float]]:
    """The seed part of the variance of ``mean(side_a) - mean(side_b)``, per-run values.

    Paired (same seeds, same order): the variance of the per-seed differences over ``k``,
    ``k - 1`` degrees of freedom. Unpaired: each side's variance over its run count (Welch);
    a side with one run is taken to spread like the other. One run on each side: no part.
    """
    k, m = len(side_a), len(side_b)
    if pair_seeds:
        return [(float(np.var(side_a - side_b, ddof=1)) / k, k - 1)] if k > 1 else []
    if k > 1 and m > 1:
        return [
            (float(np.var(side, ddof=1)) / len(side), len(side) - 1) for side in (side_a, side_b)
        ]
    if max(k, m) == 1:
        return []
    known = side_a if k > 1 else side_b
    return [(float(np.var(known, ddof=1)) * (1 / k + 1 / m), len(known) - 1)]


def seed_interval(values: list[float], baseline: list[float]) -> Interval | None:
    """Mean difference of per-seed values paired by position, with the paired t interval
    (``scipy.stats.ttest_rel(values, baseline).confidence_interval()``); ``None`` with
    fewer than two seeds."""
    a, b = (np.asarray(side, dtype=np.float64) for side in (values, baseline))
    return t_interval(float(np.mean(a - b)), seed_part(a, b, pair_seeds=True))


def delta_interval(
    runs: list[tuple[list[str], np.ndarray]],
    baseline_runs: list[tuple[list[str], np.ndarray]],
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
    pair_seeds: bool = False,
) -> Interval | None:
    """The difference of mean mIoU (variant - baseline) with its 95% interval.

    A run's value is the mIoU of its summed per-image confusion matrices. The interval
    combines the seed part (:func:`seed_part`, on the runs' values) with the image part:
    the variance of the seed-averaged difference over ``samples`` bootstrap resamples of
    the validation images (the same images for every run of both sides, ``n - 1`` degrees
    of freedom); :func:`t_interval` adds them.

    Args:
        runs: Per seed run of the variant: (image names, confmats ``(n, C, C)``).
        baseline_runs: The same for the baseline.
        samples: Number of image resamples.
        seed: Seed of the resampling.
        pair_seeds: ``runs[i]`` and ``baseline_runs[i]`` come from the same seed.

    Returns:
        The interval; ``None`` if the runs scored different image sets, or nothing
        measures the spread (one run per side and one image).

    Raises:
        ValueError: ``pair_seeds`` with sides of different lengths, or fewer than 2
            ``samples``.
    """
    if samples < 2:
        raise ValueError(f"samples must be >= 2 image resamples, got {samples}")
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
    weights = bootstrap_image_weights(len(names), samples, np.random.default_rng(seed))
    per_run = np.stack([weighted_miou(weights, cm) for cm in aligned], 1)  # (samples + 1, runs)
    k = len(runs)
    return seed_image_interval(per_run[:, :k], per_run[:, k:], len(names), pair_seeds)


def seed_image_interval(
    side_a: np.ndarray, side_b: np.ndarray, images: int, pair_seeds: bool
) -> Interval | None:
    """The interval of ``mean(side_a runs) - mean(side_b runs)`` under an image bootstrap.

    Args:
        side_a: ``(samples + 1, k)``: each run's value, row 0 on the images as they are,
            then one row per image resample (:func:`bootstrap_image_weights`; the same
            resample in every column of both sides).
        side_b: ``(samples + 1, m)``: the same for the other side.
        images: Number of images resampled.
        pair_seeds: Column ``i`` of both sides comes from the same seed.

    Returns:
        :func:`t_interval` of the seed part (:func:`seed_part`, on row 0) and the image part
        (the variance of the resampled differences, ``images - 1`` degrees of freedom; a
        resample of images without a single scored pixel has no mIoU and is left out).
    """
    draws = side_a.mean(1) - side_b.mean(1)
    parts = seed_part(side_a[0], side_b[0], pair_seeds)
    resampled = draws[1:][np.isfinite(draws[1:])]
    if len(resampled) > 1 and images > 1:
        parts.append((float(np.var(resampled, ddof=1)), images - 1))
    return t_interval(float(draws[0]), parts)


def power(
    delta: float,
    se: float,
    seeds: int,
    low: float | None = None,
    high: float | None = None,
    df: float = math.inf,
) -> tuple[float, float | None, str]:
    """Minimum detectable effect, seeds needed and the verdict of one row.

    The minimum detectable effect (MDE) is the difference this comparison detects with 80%
    power at the 5% two-sided level: ``(t_0.975 + t_0.80) * se`` with ``df`` degrees of
    freedom, where ``se`` is the standard error of the difference. The seeds needed to
    detect the observed difference: :func:`seeds_needed`.

    Args:
        delta: The observed difference.
        se: Its standard error.
        seeds: Seed runs per side behind ``se``.
        low: Lower end of the 95% interval (``None``: ``delta - t_0.975 * se``).
        high: Upper end of the 95% interval.
        df: Degrees of freedom of ``se`` (``inf``: normal quantiles).

    Returns:
        ``(mde, seeds_needed, verdict)``: ``seeds_needed`` is ``None`` when ``delta`` is 0;
        ``verdict`` is ``"answered"`` when the interval excludes 0, ``"no effect larger than
        MDE"`` when it lies inside ``[-MDE, +MDE]`` (so two sides equal on every draw, an
        interval and MDE of exactly 0, say no difference), ``"inconclusive"`` otherwise.
    """
    t_level = float(stdtrit(df, 0.5 + LEVEL / 2))
    low = delta - t_level * se if low is None else low
    high = delta + t_level * se if high is None else high
    mde = detectable(se, df)
    needed = None if delta == 0 else seeds_needed(abs(delta), se, max(seeds, 1), df)
    if low > 0 or high < 0:
        verdict = ANSWERED
    elif -mde <= low and high <= mde:
        verdict = NO_LARGER_EFFECT
    else:
        verdict = INCONCLUSIVE
    return float(mde), needed, verdict


def detectable(se: float, df: float) -> float:
    """The difference detected with 80% power at the 5% two-sided level:
    ``(t_0.975 + t_0.80) * se`` at ``df`` degrees of freedom."""
    return (float(stdtrit(df, 0.5 + LEVEL / 2)) + float(stdtrit(df, POWER))) * se


def seeds_needed(effect: float, se: float, seeds: int, df: float) -> float:
    """Seed runs per side that detect ``effect`` with 80% power (a real number, rounded up
    for display; below ``seeds`` when ``effect`` exceeds the MDE).

    With ``n`` seeds the standard error is ``se * sqrt(seeds / n)`` and the degrees of
    freedom ``df + n - seeds`` (one more per seed, at least 1), so ``n`` solves
    ``detectable(se * sqrt(seeds / n), df + n - seeds) == effect``; with ``df = inf`` that
    is ``seeds * (MDE / effect)^2``. Scaling the whole standard error treats the image term
    as shrinking with more seeds too, so this is a lower bound when the validation images,
    not the seeds, dominate the spread (then more images help, not more seeds).

    Args:
        effect: The difference to detect (> 0).
        se: Standard error with ``seeds`` seed runs per side.
        seeds: Seed runs per side behind ``se``.
        df: Degrees of freedom of ``se``.
    """

    def wanted(n: float) -> float:  # the seeds that n seeds' degrees of freedom call for
        return seeds * (detectable(se, max(df + n - seeds, 1.0)) / effect) ** 2

    # n - wanted(n) rises with n (wanted falls: more seeds, more degrees of freedom), so
    # its one root lies between a tiny n and wanted(tiny n): bisect
    low = 1e-9
    high = max(wanted(low), low)
    for _ in range(200):
        mid = (low + high) / 2
        low, high = (mid, high) if mid < wanted(mid) else (low, mid)
        if high - low <= 1e-9 * high:
            break
    return float(high)


def bootstrap_image_weights(n: int, samples: int, rng: np.random.Generator) -> np.ndarray:
    """Image weights ``(samples + 1, n)``: row 0 all ones (the observed data), then for each
    resample how often each of the ``n`` images was drawn (``n`` draws with replacement)."""
    draws = [np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(samples)]
    return np.concatenate([np.ones((1, n)), np.stack(draws)])


def weighted_miou(weights: np.ndarray, confmats: np.ndarray) -> np.ndarray:
    """mIoU of per-image confusion matrices ``(n, C, C)`` summed under each row of
    ``weights`` ``(b, n)``: shape ``(b,)``."""
    return mean_iou(np.einsum("bn,nij->bij", weights, confmats))
