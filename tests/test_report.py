"""Summary statistics against hand computations."""

from __future__ import annotations

import json

import numpy as np
import pytest

from seglit.artifacts import write_summary
from seglit.recipe import parse_recipe
from seglit.report import build_rows, mean_iou, paired_bootstrap_delta


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


def test_a_run_without_per_image_matrices_unpairs_the_seeds(tmp_path):
    recipe = parse_recipe(
        {
            "name": "r",
            "ablation": {
                "model.net.init_args.fusion": ["sum", "concat"],
                "seeds": [0, 1, 2],
                "baseline": "sum",
            },
        }
    )
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
