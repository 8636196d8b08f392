"""Summary statistics against hand computations: mIoU, bootstrap intervals, power."""

from __future__ import annotations

import numpy as np
import pytest
from bootstrap_cases import interval, random_confmats
from scipy import stats

from seglit.summary.stats import (
    ANSWERED,
    INCONCLUSIVE,
    NO_LARGER_EFFECT,
    delta_interval,
    mean_iou,
    power,
    seed_interval,
    seeds_needed,
)


def test_mean_iou_skips_classes_with_empty_union():
    cm = np.array([[5, 1, 0], [2, 3, 0], [0, 0, 0]])
    expected = np.mean([5 / (5 + 1 + 2), 3 / (3 + 2 + 1)])
    assert mean_iou(cm) == pytest.approx(expected)


def _image_draws(confmats, seed, samples):
    """Each run's mIoU under the image resamples a plain loop draws in the documented order:
    ``samples`` times ``n`` image indices with replacement; ``(samples, runs)``."""
    n = confmats[0].shape[0]
    draw = np.random.default_rng(seed)
    picks = [draw.integers(0, n, n) for _ in range(samples)]
    return np.array([[mean_iou(cm[idx].sum(0)) for cm in confmats] for idx in picks])


def _t(df):
    return stats.t.ppf(0.975, df)


def test_one_seed_interval_is_the_image_bootstrap_t_interval():
    """One run per side: no seed part; image part = variance of the resampled differences,
    ``n - 1`` degrees of freedom."""
    rng = np.random.default_rng(1)
    names = [f"img{i}" for i in range(7)]
    a, b = random_confmats(rng, 7), random_confmats(rng, 7)
    delta, low, high = interval([(names, a)], [(names, b)], samples=200, seed=3)
    assert delta == pytest.approx(mean_iou(a.sum(0)) - mean_iou(b.sum(0)))
    draws = _image_draws([a, b], 3, 200)
    half = _t(6) * np.std(draws[:, 0] - draws[:, 1], ddof=1)
    assert (low, high) == pytest.approx((delta - half, delta + half))


def test_unpaired_interval_matches_a_hand_computation():
    """Seeds unpaired: Welch's seed part (each side's spread over its runs) plus the image
    part, degrees of freedom by Welch-Satterthwaite."""
    rng = np.random.default_rng(4)
    n, k, m, samples = 6, 2, 3, 150
    names = [f"img{i}" for i in range(n)]
    variant = [random_confmats(rng, n) for _ in range(k)]
    baseline = [random_confmats(rng, n) for _ in range(m)]
    result = interval(
        [(names, cm) for cm in variant], [(names, cm) for cm in baseline], samples, seed=7
    )
    a = np.array([mean_iou(cm.sum(0)) for cm in variant])
    b = np.array([mean_iou(cm.sum(0)) for cm in baseline])
    draws = _image_draws(variant + baseline, 7, samples)
    parts = [
        (np.var(a, ddof=1) / k, k - 1),
        (np.var(b, ddof=1) / m, m - 1),
        (np.var(draws[:, :k].mean(1) - draws[:, k:].mean(1), ddof=1), n - 1),
    ]
    var = sum(v for v, _ in parts)
    df = var**2 / sum(v**2 / d for v, d in parts)
    delta = a.mean() - b.mean()
    half = _t(df) * np.sqrt(var)
    assert result == pytest.approx((delta, delta - half, delta + half))


def test_seed_paired_interval_matches_a_hand_computation():
    """With pair_seeds the seed part is the spread of the per-seed differences."""
    rng = np.random.default_rng(8)
    n, k, samples = 5, 3, 120
    names = [f"img{i}" for i in range(n)]
    variant = [random_confmats(rng, n) for _ in range(k)]
    baseline = [random_confmats(rng, n) for _ in range(k)]
    result = interval(
        [(names, cm) for cm in variant],
        [(names, cm) for cm in baseline],
        samples,
        seed=11,
        pair_seeds=True,
    )
    diffs = np.array([mean_iou(a.sum(0)) - mean_iou(b.sum(0)) for a, b in zip(variant, baseline)])
    draws = _image_draws(variant + baseline, 11, samples)
    seed_var, image_var = (
        np.var(diffs, ddof=1) / k,
        np.var(draws[:, :k].mean(1) - draws[:, k:].mean(1), ddof=1),
    )
    df = (seed_var + image_var) ** 2 / (seed_var**2 / (k - 1) + image_var**2 / (n - 1))
    half = _t(df) * np.sqrt(seed_var + image_var)
    assert result == pytest.approx((diffs.mean(), diffs.mean() - half, diffs.mean() + half))


def _same_on_every_image(rng, runs, images=6):
    """Runs whose images all have one confusion matrix: resampling images changes nothing,
    so only the seeds spread."""
    return [np.repeat(rng.integers(1, 50, (1, 3, 3)), images, 0) for _ in range(runs)]


@pytest.mark.parametrize("k", [2, 3, 5])
def test_without_image_spread_the_interval_is_scipys_t_interval(k):
    """Paired: ``scipy.stats.ttest_rel``'s interval; unpaired: Welch's ``ttest_ind``."""
    rng = np.random.default_rng(k)
    names = [f"img{i}" for i in range(6)]
    variant, baseline = _same_on_every_image(rng, k), _same_on_every_image(rng, k + 1)
    a = [float(mean_iou(cm.sum(0))) for cm in variant]
    b = [float(mean_iou(cm.sum(0))) for cm in baseline]
    paired = interval(
        [(names, cm) for cm in variant], [(names, cm) for cm in baseline[:k]], pair_seeds=True
    )
    reference = stats.ttest_rel(a, b[:k]).confidence_interval(0.95)
    assert paired[1:] == pytest.approx((reference.low, reference.high))
    unpaired = interval([(names, cm) for cm in variant], [(names, cm) for cm in baseline])
    reference = stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert unpaired[1:] == pytest.approx((reference.low, reference.high))
    checker = seed_interval(a, b[:k])
    reference = stats.ttest_rel(a, b[:k]).confidence_interval(0.95)
    assert (checker.low, checker.high) == pytest.approx((reference.low, reference.high))


def test_one_run_against_several_borrows_the_other_sides_spread():
    """Unpaired, one variant run against m baseline runs: the variant is taken to spread
    like the baseline (the pooled two-sample t interval with one observation on a side)."""
    rng = np.random.default_rng(3)
    names = [f"img{i}" for i in range(6)]
    variant, baseline = _same_on_every_image(rng, 1), _same_on_every_image(rng, 4)
    a = [float(mean_iou(cm.sum(0))) for cm in variant]
    b = [float(mean_iou(cm.sum(0))) for cm in baseline]
    found = interval([(names, cm) for cm in variant], [(names, cm) for cm in baseline])
    reference = stats.ttest_ind(a, b, equal_var=True).confidence_interval(0.95)
    assert found[1:] == pytest.approx((reference.low, reference.high))


def test_what_nothing_measures_gets_no_interval():
    """One run per side and one image: no spread is measured, so no interval (not a
    zero-width one that would read as answered); a run that scored no pixel has no mIoU."""
    rng = np.random.default_rng(9)
    one = [(["only"], random_confmats(rng, 1))]
    assert delta_interval(one, [(["only"], random_confmats(rng, 1))]) is None
    assert seed_interval([0.5], [0.4]) is None
    names = [f"img{i}" for i in range(4)]
    void = np.zeros((4, 3, 3))  # every pixel void: mIoU undefined
    assert delta_interval([(names, void)], [(names, random_confmats(rng, 4))]) is None
    with pytest.raises(ValueError, match="samples must be >= 2 image resamples, got 1"):
        delta_interval(one, one, samples=1)


def test_resamples_of_only_void_images_are_left_out_of_the_image_part():
    rng = np.random.default_rng(10)
    names = ["a", "b", "c"]
    a, b = random_confmats(rng, 3), random_confmats(rng, 3)
    a[1:] = 0
    b[1:] = 0  # images b and c have no scored pixel: a resample of only them has no mIoU
    found = delta_interval([(names, a)], [(names, b)], samples=300)
    assert found is not None and np.isfinite([found.low, found.high]).all()
    assert found.low < found.delta < found.high


def test_pairing_seeds_cancels_what_a_seed_does_to_both_configs():
    """A seed that moves both configs alike widens the unpaired interval, not the paired one."""
    rng = np.random.default_rng(6)
    names = [str(i) for i in range(30)]
    base = random_confmats(rng, 30)
    eye = np.eye(3, dtype=int)
    shifts = (0, 12, 4, 20)  # the seed's effect, shared by both configs
    baseline = [(names, base + d * eye) for d in shifts]
    variant = [(names, base + (d + 3) * eye) for d in shifts]  # always a bit better
    _, low_u, high_u = interval(variant, baseline)
    delta, low_p, high_p = interval(variant, baseline, pair_seeds=True)
    assert low_u < 0 < high_u  # the shared spread hides the gain
    assert 0 < low_p <= delta <= high_p
    assert high_p - low_p < (high_u - low_u) / 3
    with pytest.raises(ValueError, match="one baseline run per variant run, got 4 and 3"):
        interval(variant, baseline[:3], pair_seeds=True)


def test_seed_to_seed_variance_widens_theinterval():
    rng = np.random.default_rng(5)
    names = [str(i) for i in range(30)]
    base = random_confmats(rng, 30)
    steady = [base + 2 * np.eye(3, dtype=int) for _ in range(3)]  # the same result per seed
    noisy = [base + d * np.eye(3, dtype=int) for d in (0, 2, 12)]  # seeds disagree
    _, low1, high1 = interval([(names, c) for c in steady], [(names, base)])
    _, low2, high2 = interval([(names, c) for c in noisy], [(names, base)])
    assert high2 - low2 > 2 * (high1 - low1)


def test_bootstrap_aligns_images_by_name_and_averages_seeds():
    rng = np.random.default_rng(2)
    names = ["a", "b", "c", "d"]
    a1, a2, b = random_confmats(rng, 4), random_confmats(rng, 4), random_confmats(rng, 4)
    shuffled = [3, 1, 0, 2]
    result = interval(
        [(names, a1), ([names[i] for i in shuffled], a2[shuffled])], [(names, b)], samples=50
    )
    expected = (mean_iou(a1.sum(0)) + mean_iou(a2.sum(0))) / 2 - mean_iou(b.sum(0))
    assert result[0] == pytest.approx(expected)
    assert interval([(names, a1)], [(["x", "b", "c", "d"], b)]) is None


def test_identical_variants_have_a_zero_interval_and_a_better_one_a_positive_one():
    rng = np.random.default_rng(0)
    names = [str(i) for i in range(20)]
    base = random_confmats(rng, 20)
    assert interval([(names, base)], [(names, base)]) == (0.0, 0.0, 0.0)
    better = base.copy()
    for c in range(3):
        better[:, c, c] += 50  # more true positives on every image
    delta, low, high = interval([(names, better)], [(names, base)])
    assert 0 < low <= delta <= high


def test_power_verdicts():
    # The interval excludes 0: answered, whatever the MDE.
    mde, needed, verdict = power(0.05, 0.01, 3, 0.03, 0.07)
    assert verdict == ANSWERED and mde == pytest.approx(0.0280158, rel=1e-5) and needed < 3
    # Inside +-MDE: no effect of the MDE's size.
    assert power(0.002, 0.01, 3, -0.015, 0.019)[2] == NO_LARGER_EFFECT
    # Reaches beyond the MDE on one side: inconclusive, with the seeds it would take.
    mde, needed, verdict = power(0.01, 0.01, 3, -0.01, 0.03)
    assert verdict == INCONCLUSIVE and needed == pytest.approx(3 * (mde / 0.01) ** 2)
    assert power(0.0, 0.01, 3)[1] is None
    # Both sides equal on every draw (a CRF's rows share the network's checkerboard score):
    # no difference, not "inconclusive" for want of seeds.
    assert power(0.0, 0.0, 3, 0.0, 0.0) == (0.0, None, NO_LARGER_EFFECT)


@pytest.mark.parametrize("df", [1.0, 2.0, 5.0, 2.7, 40.0])
def test_seeds_needed_solve_the_power_equation_at_their_own_degrees_of_freedom(df):
    """n seeds: SE * sqrt(k / n) at df + n - k degrees of freedom detects the effect; many
    degrees of freedom give k (MDE / effect)^2, and few fewer seeds than that formula at
    the observed df would ask (3 seeds: t(2) = 4.30 would stay with every added seed)."""
    k, se, effect = 3, 0.08, 0.15
    n = seeds_needed(effect, se, k, df)
    t_sum = stats.t.ppf(0.975, df + n - k) + stats.t.ppf(0.8, df + n - k)
    assert t_sum * se * np.sqrt(k / n) == pytest.approx(effect)
    at_observed_df = k * ((stats.t.ppf(0.975, df) + stats.t.ppf(0.8, df)) * se / effect) ** 2
    assert n < at_observed_df
    normal = k * ((stats.norm.ppf(0.975) + stats.norm.ppf(0.8)) * se / effect) ** 2
    assert seeds_needed(effect, se, k, np.inf) == pytest.approx(normal)
    assert n > normal


def _simulated_runs(rng, effect, seeds, images, seed_sd=0.01, image_sd=0.05, pixels=200):
    """Two configs' per-image 2-class confusion matrices over paired seeds.

    A run's accuracy on image ``i`` is ``0.8 + effect (variant only) + what the seed does to
    both configs + what it does to this config + the image's difficulty + noise``; the
    confusion matrix is symmetric, so the image's IoU per class is ``p / (2 - p)``.
    """
    names = [f"i{i}" for i in range(images)]
    difficulty = rng.normal(0, image_sd, images)
    shared = rng.normal(0, seed_sd, seeds)
    sides = []
    for shift in (effect, 0.0):
        runs = []
        for s in range(seeds):
            own = rng.normal(0, seed_sd)
            p = 0.8 + shift + shared[s] + own + difficulty + rng.normal(0, 0.01, images)
            p = np.clip(p, 0.01, 0.99)
            cm = np.zeros((images, 2, 2))
            cm[:, 0, 0] = cm[:, 1, 1] = pixels * p
            cm[:, 0, 1] = cm[:, 1, 0] = pixels * (1 - p)
            runs.append((names, cm))
        sides.append(runs)
    return sides


def _simulate(effect, seeds, seed_sd, images=20, sims=150, samples=200):
    rng = np.random.default_rng(0)
    out = []
    for _ in range(sims):
        variant, baseline = _simulated_runs(rng, effect, seeds, images, seed_sd=seed_sd)
        found = delta_interval(
            variant, baseline, samples=samples, seed=int(rng.integers(2**31)), pair_seeds=True
        )
        mde, _, verdict = power(found.delta, found.se, seeds, found.low, found.high, found.df)
        out.append((found.delta, found.low, found.high, mde, verdict))
    return out


@pytest.mark.parametrize(
    ("seeds", "seed_sd"),
    [(3, 0.03), (8, 0.01)],
    ids=["3 seeds, training noise dominates", "8 seeds, both"],
)
def test_interval_and_power_statement_hold_in_a_simulation_with_a_known_effect(seeds, seed_sd):
    """Coverage of the interval, power at the MDE, and the "no larger effect" statement.

    Paired seeds, 20 images, seed and image terms both present. The true Δ is the mean
    observed Δ over many simulations (mIoU is not linear in the accuracy). With 3 seeds
    and training noise dominating, a percentile bootstrap over the seeds (the summary's
    interval before) held the truth in about 3 experiments of 4.
    """
    rng = np.random.default_rng(1)
    observed = []
    for _ in range(400):
        variant, baseline = _simulated_runs(rng, 0.01, seeds, 20, seed_sd=seed_sd)
        observed.append(
            np.mean([mean_iou(cm.sum(0)) for _, cm in variant])
            - np.mean([mean_iou(cm.sum(0)) for _, cm in baseline])
        )
    truth = float(np.mean(observed))
    small = _simulate(0.01, seeds, seed_sd)
    coverage = np.mean([low <= truth <= high for _, low, high, _, _ in small])
    assert 0.9 <= coverage <= 1.0
    mde = float(np.mean([r[3] for r in small]))
    # A true effect of the MDE's size is detected about 80% of the time ...
    at_mde = _simulate(0.01 * mde / truth, seeds, seed_sd)
    detected = np.mean([r[4] == ANSWERED for r in at_mde])
    assert 0.6 <= detected <= 0.95
    # ... and is (wrongly) called "no effect larger than MDE" rarely.
    assert np.mean([r[4] == NO_LARGER_EFFECT for r in at_mde]) <= 0.1
    # No effect: rarely "answered", often "no effect larger than MDE".
    null = _simulate(0.0, seeds, seed_sd)
    assert np.mean([r[4] == ANSWERED for r in null]) <= 0.1
    assert np.mean([r[4] == NO_LARGER_EFFECT for r in null]) >= 0.3
