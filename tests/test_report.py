"""Summary statistics against hand computations."""

from __future__ import annotations

import json

import numpy as np
import pytest

from seglit.artifacts import verdict_lines, write_summary
from seglit.recipe import parse_recipe
from seglit.report import (
    ANSWERED,
    INCONCLUSIVE,
    NO_LARGER_EFFECT,
    bootstrap_delta_draws,
    build_rows,
    mean_iou,
    paired_bootstrap_delta,
    power,
)


def test_mean_iou_skips_classes_with_empty_union():
    cm = np.array([[5, 1, 0], [2, 3, 0], [0, 0, 0]])
    expected = np.mean([5 / (5 + 1 + 2), 3 / (3 + 2 + 1)])
    assert mean_iou(cm) == pytest.approx(expected)


def _random_confmats(rng, n, c=3):
    return rng.integers(0, 20, size=(n, c, c))


def test_paired_bootstrap_matches_a_plain_loop():
    rng = np.random.default_rng(1)
    names = [f"img{i}" for i in range(7)]
    a, b = _random_confmats(rng, 7), _random_confmats(rng, 7)
    delta, low, high = paired_bootstrap_delta([(names, a)], [(names, b)], samples=200, seed=3)
    assert delta == pytest.approx(mean_iou(a.sum(0)) - mean_iou(b.sum(0)))
    draw = np.random.default_rng(3)
    diffs = []
    for _ in range(200):
        idx = draw.integers(0, 7, 7)
        diffs.append(mean_iou(a[idx].sum(0)) - mean_iou(b[idx].sum(0)))
    assert (low, high) == pytest.approx(tuple(np.percentile(diffs, [2.5, 97.5])))


def test_two_level_bootstrap_matches_a_hand_computation():
    """Seeds and images resampled: the same numbers as a plain loop over the same draws."""
    rng = np.random.default_rng(4)
    n, k, m, samples = 6, 2, 3, 150
    names = [f"img{i}" for i in range(n)]
    variant = [_random_confmats(rng, n) for _ in range(k)]
    baseline = [_random_confmats(rng, n) for _ in range(m)]
    result = paired_bootstrap_delta(
        [(names, cm) for cm in variant], [(names, cm) for cm in baseline], samples, seed=7
    )
    draw = np.random.default_rng(7)  # the draws in the documented order:
    images = [draw.integers(0, n, n) for _ in range(samples)]  # 1. images, every sample
    seeds_a = draw.integers(0, k, (samples, k))  # 2. the variant's seed runs
    seeds_b = draw.integers(0, m, (samples, m))  # 3. the baseline's seed runs
    diffs = []
    for s in range(samples):
        side_a = np.mean([mean_iou(variant[j][images[s]].sum(0)) for j in seeds_a[s]])
        side_b = np.mean([mean_iou(baseline[j][images[s]].sum(0)) for j in seeds_b[s]])
        diffs.append(side_a - side_b)
    observed = np.mean([mean_iou(cm.sum(0)) for cm in variant]) - np.mean(
        [mean_iou(cm.sum(0)) for cm in baseline]
    )
    assert result[0] == pytest.approx(observed)
    assert result[1:] == pytest.approx(tuple(np.percentile(diffs, [2.5, 97.5])))


def test_seed_paired_bootstrap_matches_a_hand_computation():
    """With pair_seeds, each draw picks one seed for both sides."""
    rng = np.random.default_rng(8)
    n, k, samples = 5, 3, 120
    names = [f"img{i}" for i in range(n)]
    variant = [_random_confmats(rng, n) for _ in range(k)]
    baseline = [_random_confmats(rng, n) for _ in range(k)]
    result = paired_bootstrap_delta(
        [(names, cm) for cm in variant],
        [(names, cm) for cm in baseline],
        samples,
        seed=11,
        pair_seeds=True,
    )
    draw = np.random.default_rng(11)
    images = [draw.integers(0, n, n) for _ in range(samples)]  # 1. images, every sample
    seeds = draw.integers(0, k, (samples, k))  # 2. the seeds, one draw for both sides
    diffs = [
        np.mean([mean_iou(variant[j][images[s]].sum(0)) for j in seeds[s]])
        - np.mean([mean_iou(baseline[j][images[s]].sum(0)) for j in seeds[s]])
        for s in range(samples)
    ]
    observed = np.mean([mean_iou(a.sum(0)) - mean_iou(b.sum(0)) for a, b in zip(variant, baseline)])
    assert result[0] == pytest.approx(observed)
    assert result[1:] == pytest.approx(tuple(np.percentile(diffs, [2.5, 97.5])))


def test_pairing_seeds_cancels_what_a_seed_does_to_both_configs():
    """A seed that moves both configs alike widens the unpaired interval, not the paired one."""
    rng = np.random.default_rng(6)
    names = [str(i) for i in range(30)]
    base = _random_confmats(rng, 30)
    eye = np.eye(3, dtype=int)
    shifts = (0, 12, 4, 20)  # the seed's effect, shared by both configs
    baseline = [(names, base + d * eye) for d in shifts]
    variant = [(names, base + (d + 3) * eye) for d in shifts]  # always a bit better
    _, low_u, high_u = paired_bootstrap_delta(variant, baseline)
    delta, low_p, high_p = paired_bootstrap_delta(variant, baseline, pair_seeds=True)
    assert low_u < 0 < high_u  # the shared spread hides the gain
    assert 0 < low_p <= delta <= high_p
    assert high_p - low_p < (high_u - low_u) / 3
    with pytest.raises(ValueError, match="one baseline run per variant run, got 4 and 3"):
        paired_bootstrap_delta(variant, baseline[:3], pair_seeds=True)


def test_seed_to_seed_variance_widens_the_interval():
    rng = np.random.default_rng(5)
    names = [str(i) for i in range(30)]
    base = _random_confmats(rng, 30)
    steady = [base + 2 * np.eye(3, dtype=int) for _ in range(3)]  # the same result per seed
    noisy = [base + d * np.eye(3, dtype=int) for d in (0, 2, 12)]  # seeds disagree
    _, low1, high1 = paired_bootstrap_delta([(names, c) for c in steady], [(names, base)])
    _, low2, high2 = paired_bootstrap_delta([(names, c) for c in noisy], [(names, base)])
    assert high2 - low2 > 2 * (high1 - low1)


def test_bootstrap_aligns_images_by_name_and_averages_seeds():
    rng = np.random.default_rng(2)
    names = ["a", "b", "c", "d"]
    a1, a2, b = _random_confmats(rng, 4), _random_confmats(rng, 4), _random_confmats(rng, 4)
    shuffled = [3, 1, 0, 2]
    result = paired_bootstrap_delta(
        [(names, a1), ([names[i] for i in shuffled], a2[shuffled])], [(names, b)], samples=50
    )
    expected = (mean_iou(a1.sum(0)) + mean_iou(a2.sum(0))) / 2 - mean_iou(b.sum(0))
    assert result[0] == pytest.approx(expected)
    assert paired_bootstrap_delta([(names, a1)], [(["x", "b", "c", "d"], b)]) is None


def test_identical_variants_have_a_zero_interval_and_a_better_one_a_positive_one():
    rng = np.random.default_rng(0)
    names = [str(i) for i in range(20)]
    base = _random_confmats(rng, 20)
    assert paired_bootstrap_delta([(names, base)], [(names, base)]) == (0.0, 0.0, 0.0)
    better = base.copy()
    for c in range(3):
        better[:, c, c] += 50  # more true positives on every image
    delta, low, high = paired_bootstrap_delta([(names, better)], [(names, base)])
    assert 0 < low <= delta <= high


def _write_run(folder, miou, acc, confmats=None, status="finished"):
    folder.mkdir(parents=True)
    best = {"mIoU": miou, "acc": acc, "IoU": {"bg": miou, "fg": None}}
    metrics = {
        "status": status,
        "best": best if status == "finished" else None,
        "params": 1234,
        "wall_time_s": 10.0,
        "train_images_per_sec": 5.0,
        "peak_mem_mb": 100.0,
    }
    (folder / "metrics.json").write_text(json.dumps(metrics))
    if confmats is not None:
        np.savez(
            folder / "val_image_confmats.npz", names=np.array(["i0", "i1", "i2"]), confmats=confmats
        )


def test_rows_aggregate_seeds_against_the_baseline(tmp_path):
    recipe = parse_recipe(
        {
            "name": "r",
            "ablation": {
                "model.net.init_args.fusion": ["sum", "concat", "none"],
                "seeds": [0, 1],
                "baseline": "sum",
            },
        }
    )
    rng = np.random.default_rng(0)
    _write_run(tmp_path / "sum-s0", 0.50, 0.9, _random_confmats(rng, 3, 2))
    _write_run(tmp_path / "sum-s1", 0.70, 0.8, _random_confmats(rng, 3, 2))
    _write_run(tmp_path / "concat-s0", 0.80, 0.95, _random_confmats(rng, 3, 2))
    _write_run(tmp_path / "concat-s1", 0.60, 0.85, _random_confmats(rng, 3, 2))
    _write_run(tmp_path / "none-s0", 0.0, 0.0, status="failed")
    rows = build_rows(tmp_path, recipe.variants(), recipe.baseline_group())
    by = {r.variant: r for r in rows}
    assert by["sum"].mIoU_mean == pytest.approx(0.6)
    assert by["sum"].mIoU_std == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert by["sum"].baseline and by["sum"].delta == 0.0
    assert by["concat"].acc == pytest.approx(0.9)
    assert by["concat"].delta_ci_low is not None  # bootstrap from the per-image matrices
    assert by["concat"].delta_ci_seeds == "paired"  # both configs finished seeds 0 and 1
    assert by["none"].status == "failed" and by["none"].mIoU_mean is None
    table = write_summary(tmp_path, "r", rows)
    assert "| sum | finished | 0.6000 ± 0.1414 | baseline |" in table
    assert "| none | failed (0/2) |" in table
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert [r["variant"] for r in saved["rows"]] == ["sum", "concat", "none"]
    csv_lines = (tmp_path / "summary.csv").read_text().splitlines()
    assert csv_lines[0].startswith("variant,status,runs,finished,mIoU_mean") and len(csv_lines) == 4


def test_rows_pair_seeds_only_when_both_configs_finished_the_same_seeds(tmp_path):
    recipe = parse_recipe(
        {
            "name": "r",
            "ablation": {
                "model.net.init_args.fusion": ["sum", "concat", "none"],
                "seeds": [0, 1, 2],
                "baseline": "sum",
            },
        }
    )
    rng = np.random.default_rng(3)
    groups = ("sum", "concat", "none")
    runs = {(g, s): _random_confmats(rng, 3, 2) for g in groups for s in range(3)}
    for (group, seed), cm in runs.items():
        failed = (group, seed) == ("none", 1)
        _write_run(tmp_path / f"{group}-s{seed}", 0.5, 0.9, cm, "failed" if failed else "finished")
    rows = {r.variant: r for r in build_rows(tmp_path, recipe.variants(), "sum")}
    names = ["i0", "i1", "i2"]
    expected = paired_bootstrap_delta(
        [(names, runs["concat", s]) for s in range(3)],
        [(names, runs["sum", s]) for s in range(3)],
        pair_seeds=True,
    )
    assert (rows["concat"].delta, rows["concat"].delta_ci_low, rows["concat"].delta_ci_high) == (
        pytest.approx(expected)
    )
    assert rows["concat"].delta_ci_seeds == "paired"
    unpaired = paired_bootstrap_delta(
        [(names, runs["none", s]) for s in (0, 2)], [(names, runs["sum", s]) for s in range(3)]
    )
    assert (rows["none"].delta, rows["none"].delta_ci_low, rows["none"].delta_ci_high) == (
        pytest.approx(unpaired)
    )
    assert rows["none"].delta_ci_seeds == "unpaired"
    table = write_summary(tmp_path, "r", list(rows.values()))
    none_line = next(line for line in table.splitlines() if line.startswith("| none |"))
    assert "(seeds unpaired)" in none_line
    concat_line = next(line for line in table.splitlines() if line.startswith("| concat |"))
    assert "unpaired" not in concat_line


def _sum_concat_recipe():
    """Fusion sum (the baseline) vs concat, seeds 0-2."""
    return parse_recipe(
        {
            "name": "r",
            "ablation": {
                "model.net.init_args.fusion": ["sum", "concat"],
                "seeds": [0, 1, 2],
                "baseline": "sum",
            },
        }
    )


def test_a_run_without_per_image_matrices_unpairs_the_seeds(tmp_path):
    recipe = _sum_concat_recipe()
    rng = np.random.default_rng(9)
    runs = {(g, s): _random_confmats(rng, 3, 2) for g in ("sum", "concat") for s in range(3)}
    for (group, seed), cm in runs.items():
        keep = (group, seed) != ("sum", 2)  # an older run folder without the matrices
        _write_run(tmp_path / f"{group}-s{seed}", 0.5, 0.9, cm if keep else None)
    row = next(r for r in build_rows(tmp_path, recipe.variants(), "sum") if r.variant == "concat")
    names = ["i0", "i1", "i2"]
    expected = paired_bootstrap_delta(
        [(names, runs["concat", s]) for s in range(3)], [(names, runs["sum", s]) for s in (0, 1)]
    )
    assert (row.delta, row.delta_ci_low, row.delta_ci_high) == pytest.approx(expected)
    assert row.delta_ci_seeds == "unpaired"


def test_rows_carry_the_power_of_their_comparison(tmp_path):
    """MDE = 2.8 x the SD of the same bootstrap draws as the interval; seeds needed."""
    recipe = _sum_concat_recipe()
    rng = np.random.default_rng(5)
    runs = {(g, s): _random_confmats(rng, 3, 2) for g in ("sum", "concat") for s in range(3)}
    for (group, seed), cm in runs.items():
        _write_run(tmp_path / f"{group}-s{seed}", 0.5, 0.9, cm)
    rows = build_rows(tmp_path, recipe.variants(), "sum")
    row = rows[1]
    names = ["i0", "i1", "i2"]
    draws = bootstrap_delta_draws(
        [(names, runs["concat", s]) for s in range(3)],
        [(names, runs["sum", s]) for s in range(3)],
        pair_seeds=True,
    )
    se = np.std(draws[1:], ddof=1)
    assert row.mde == pytest.approx(2.801585 * se)
    assert row.seeds_needed == pytest.approx(3 * (row.mde / row.delta) ** 2)
    assert row.verdict in (ANSWERED, NO_LARGER_EFFECT, INCONCLUSIVE)
    assert rows[0].mde is None and rows[0].verdict is None  # the baseline
    table = write_summary(tmp_path, "r", rows)
    assert "| MDE | seeds for Δ |" in table
    assert table.splitlines()[-1].startswith("- concat: ")
    csv_header = (tmp_path / "summary.csv").read_text().splitlines()[0].split(",")
    assert {"mde", "seeds_needed", "verdict"} <= set(csv_header)
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["rows"][1]["mde"] == pytest.approx(row.mde)


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


def test_verdict_lines_say_what_each_row_answers():
    rows = [
        {"variant": "a", "baseline": True, "verdict": None},
        {"variant": "b", "delta": 0.05, "delta_ci_low": 0.03, "delta_ci_high": 0.07,
         "mde": 0.028, "seeds_needed": 0.9, "verdict": ANSWERED},
        {"variant": "c", "delta": 0.002, "delta_ci_low": -0.015, "delta_ci_high": 0.019,
         "mde": 0.028, "seeds_needed": 588.0, "verdict": NO_LARGER_EFFECT},
        {"variant": "d", "delta": 0.01, "delta_ci_low": -0.01, "delta_ci_high": 0.03,
         "mde": 0.028, "seeds_needed": 23.5, "verdict": INCONCLUSIVE},
    ]  # fmt: skip
    lines = verdict_lines(rows)
    assert lines[0].startswith("b: answered (Δ +0.0500 [+0.0300, +0.0700]")
    assert lines[1].startswith("c: no effect larger than 0.0280")
    assert lines[2].startswith("d: inconclusive: about 24 seeds needed")


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


def _simulate(effect, seeds=8, images=20, sims=150, samples=200):
    rng = np.random.default_rng(0)
    out = []
    for _ in range(sims):
        variant, baseline = _simulated_runs(rng, effect, seeds, images)
        draws = bootstrap_delta_draws(
            variant, baseline, samples, seed=int(rng.integers(2**31)), pair_seeds=True
        )
        low, high = np.percentile(draws[1:], [2.5, 97.5])
        mde, _, verdict = power(draws[0], np.std(draws[1:], ddof=1), seeds, low, high)
        out.append((draws[0], low, high, mde, verdict))
    return out


def test_interval_and_power_statement_hold_in_a_simulation_with_a_known_effect():
    """Coverage of the interval, power at the MDE, and the "no larger effect" statement.

    8 paired seeds, 20 images, seed and image terms both present. The true Δ is the mean
    observed Δ over many simulations (mIoU is not linear in the accuracy). At 3 seeds the
    percentile bootstrap is narrower than it should be when seeds dominate the spread
    (docs/ablations.md gives the measured coverage); 8 seeds keep this test about the
    formulas, not that small-sample bias.
    """
    rng = np.random.default_rng(1)
    observed = []
    for _ in range(400):
        variant, baseline = _simulated_runs(rng, 0.01, 8, 20)
        observed.append(
            np.mean([mean_iou(cm.sum(0)) for _, cm in variant])
            - np.mean([mean_iou(cm.sum(0)) for _, cm in baseline])
        )
    truth = float(np.mean(observed))
    small = _simulate(0.01)
    coverage = np.mean([low <= truth <= high for _, low, high, _, _ in small])
    assert 0.85 <= coverage <= 1.0
    mde = float(np.mean([r[3] for r in small]))
    # A true effect of the MDE's size is detected about 80% of the time ...
    at_mde = _simulate(0.01 * mde / truth)
    detected = np.mean([r[4] == ANSWERED for r in at_mde])
    assert 0.65 <= detected <= 0.95
    # ... and is (wrongly) called "no effect larger than MDE" rarely.
    assert np.mean([r[4] == NO_LARGER_EFFECT for r in at_mde]) <= 0.1
    # No effect: rarely "answered", often "no effect larger than MDE".
    null = _simulate(0.0)
    assert np.mean([r[4] == ANSWERED for r in null]) <= 0.15
    assert np.mean([r[4] == NO_LARGER_EFFECT for r in null]) >= 0.3


def test_checkerboard_over_training_per_config(tmp_path):
    """First and last validation's logit checkerboard per seed, seed-paired Δ interval."""
    recipe = parse_recipe(
        {
            "name": "r",
            "ablation": {
                "model.net.init_args.upsample_kernel": [2, 3],
                "seeds": [0, 1, 2],
                "baseline": "2",
            },
        }
    )
    course = {
        (2, 0): [0.10, 0.010], (2, 1): [0.12, 0.012], (2, 2): [0.11, 0.011],
        (3, 0): [0.50, 0.050], (3, 1): [0.40, 0.030], (3, 2): [0.45, 0.040],
    }  # fmt: skip
    for variant in recipe.variants():
        _write_run(tmp_path / variant.name, 0.5, 0.9)
        metrics = json.loads((tmp_path / variant.name / "metrics.json").read_text())
        scores = course[int(variant.group), variant.seed]
        metrics["history"] = [{"epoch": e, "checkerboard_logits": v} for e, v in enumerate(scores)]
        (tmp_path / variant.name / "metrics.json").write_text(json.dumps(metrics))
    rows = build_rows(tmp_path, recipe.variants(), recipe.baseline_group())
    k3 = rows[1]
    assert k3.checkerboard_logits_start == pytest.approx(0.45)
    assert k3.checkerboard_logits == pytest.approx(0.04)
    assert k3.checkerboard_logits_std == pytest.approx(0.01)
    gaps = [0.040, 0.018, 0.029]  # per seed, k3 - k2 at the last validation
    assert k3.checkerboard_logits_ci_low >= min(gaps) - 1e-12
    assert k3.checkerboard_logits_ci_high <= max(gaps) + 1e-12
    assert rows[0].checkerboard_logits_ci_low is None  # the baseline
    table = write_summary(tmp_path, "r", rows)
    assert "| variant | logit checkerboard, first val |" in table
    assert "0.04000 ± 0.01000 | +0.02900 [" in table
    assert k3.checkerboard_logits_verdict == "answered"  # every seed gap is > 0
