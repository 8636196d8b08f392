"""Summary rows from run folders: seeds aggregated, seed pairing, power, checkerboard."""

from __future__ import annotations

import json

import numpy as np
import pytest
from bootstrap_cases import interval, random_confmats
from scipy import stats

from seglit.recipe import parse_recipe
from seglit.summary import build_rows, write_summary
from seglit.summary.stats import (
    delta_interval,
    power,
    seeds_needed,
)


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
    _write_run(tmp_path / "sum-s0", 0.50, 0.9, random_confmats(rng, 3, 2))
    _write_run(tmp_path / "sum-s1", 0.70, 0.8, random_confmats(rng, 3, 2))
    _write_run(tmp_path / "concat-s0", 0.80, 0.95, random_confmats(rng, 3, 2))
    _write_run(tmp_path / "concat-s1", 0.60, 0.85, random_confmats(rng, 3, 2))
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
    table = write_summary(tmp_path, "r", rows)[0].read_text()  # summary.md
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
    runs = {(g, s): random_confmats(rng, 3, 2) for g in groups for s in range(3)}
    for (group, seed), cm in runs.items():
        failed = (group, seed) == ("none", 1)
        _write_run(tmp_path / f"{group}-s{seed}", 0.5, 0.9, cm, "failed" if failed else "finished")
    rows = {r.variant: r for r in build_rows(tmp_path, recipe.variants(), "sum")}
    names = ["i0", "i1", "i2"]
    expected = interval(
        [(names, runs["concat", s]) for s in range(3)],
        [(names, runs["sum", s]) for s in range(3)],
        pair_seeds=True,
    )
    assert (rows["concat"].delta, rows["concat"].delta_ci_low, rows["concat"].delta_ci_high) == (
        pytest.approx(expected)
    )
    assert rows["concat"].delta_ci_seeds == "paired"
    unpaired = interval(
        [(names, runs["none", s]) for s in (0, 2)], [(names, runs["sum", s]) for s in range(3)]
    )
    assert (rows["none"].delta, rows["none"].delta_ci_low, rows["none"].delta_ci_high) == (
        pytest.approx(unpaired)
    )
    assert rows["none"].delta_ci_seeds == "unpaired"
    table = write_summary(tmp_path, "r", list(rows.values()))[0].read_text()
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
    runs = {(g, s): random_confmats(rng, 3, 2) for g in ("sum", "concat") for s in range(3)}
    for (group, seed), cm in runs.items():
        keep = (group, seed) != ("sum", 2)  # an older run folder without the matrices
        _write_run(tmp_path / f"{group}-s{seed}", 0.5, 0.9, cm if keep else None)
    row = next(r for r in build_rows(tmp_path, recipe.variants(), "sum") if r.variant == "concat")
    names = ["i0", "i1", "i2"]
    expected = interval(
        [(names, runs["concat", s]) for s in range(3)], [(names, runs["sum", s]) for s in (0, 1)]
    )
    assert (row.delta, row.delta_ci_low, row.delta_ci_high) == pytest.approx(expected)
    assert row.delta_ci_seeds == "unpaired"


def test_a_one_seed_comparison_says_its_interval_knows_only_the_images(tmp_path):
    recipe = parse_recipe(
        {
            "name": "r",
            "ablation": {
                "model.net.init_args.fusion": ["sum", "concat"],
                "seeds": [0],
                "baseline": "sum",
            },
        }
    )
    rng = np.random.default_rng(2)
    for group in ("sum", "concat"):
        _write_run(tmp_path / f"{group}-s0", 0.5, 0.9, random_confmats(rng, 3, 2))
    rows = build_rows(tmp_path, recipe.variants(), "sum")
    assert rows[1].delta_ci_seeds == "one seed" and rows[1].delta_ci_low is not None
    text = write_summary(tmp_path, "r", rows)[0].read_text()
    assert "] (one seed: images only) |" in text
    assert text.splitlines()[-1].startswith("- concat: ")
    assert ", one seed: images only" in text.splitlines()[-1]


def test_rows_carry_the_power_of_their_comparison(tmp_path):
    """MDE = (t_0.975 + t_0.80) x the interval's standard error, at its degrees of freedom;
    seeds needed."""
    recipe = _sum_concat_recipe()
    rng = np.random.default_rng(5)
    runs = {(g, s): random_confmats(rng, 3, 2) for g in ("sum", "concat") for s in range(3)}
    for (group, seed), cm in runs.items():
        _write_run(tmp_path / f"{group}-s{seed}", 0.5, 0.9, cm)
    rows = build_rows(tmp_path, recipe.variants(), "sum")
    row = rows[1]
    names = ["i0", "i1", "i2"]
    found = delta_interval(
        [(names, runs["concat", s]) for s in range(3)],
        [(names, runs["sum", s]) for s in range(3)],
        pair_seeds=True,
    )
    assert 2 <= found.df < 4  # 3 seeds and 3 images: few degrees of freedom
    t_sum = stats.t.ppf(0.975, found.df) + stats.t.ppf(0.8, found.df)
    assert row.mde == pytest.approx(t_sum * found.se)
    assert row.mde > 2.801585 * found.se  # wider than the normal quantiles' 1.96 + 0.84
    assert row.seeds_needed == pytest.approx(seeds_needed(abs(row.delta), found.se, 3, found.df))
    mde, needed, verdict = power(found.delta, found.se, 3, found.low, found.high, found.df)
    assert (row.mde, row.seeds_needed) == pytest.approx((mde, needed))
    assert row.verdict == verdict
    assert rows[0].mde is None and rows[0].verdict is None  # the baseline
    table = write_summary(tmp_path, "r", rows)[0].read_text()  # summary.md
    assert "| MDE | seeds for Δ |" in table
    assert table.splitlines()[-1].startswith("- concat: ")
    csv_header = (tmp_path / "summary.csv").read_text().splitlines()[0].split(",")
    assert {"mde", "seeds_needed", "verdict"} <= set(csv_header)
    saved = json.loads((tmp_path / "summary.json").read_text())
    assert saved["rows"][1]["mde"] == pytest.approx(row.mde)


def _kernel_recipe():
    """Two upsampling kernels (baseline 2) over seeds 0-2."""
    ablation = {"model.net.init_args.upsample_kernel": [2, 3], "seeds": [0, 1, 2]}
    return parse_recipe({"name": "r", "ablation": {**ablation, "baseline": "2"}})


def test_checkerboard_over_training_per_config(tmp_path):
    """First and last validation's logit checkerboard per seed, seed-paired Δ interval."""
    recipe = _kernel_recipe()
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
    reference = stats.ttest_rel([0.050, 0.030, 0.040], [0.010, 0.012, 0.011])
    reference = reference.confidence_interval(0.95)  # the paired t interval
    assert k3.checkerboard_logits_ci_low == pytest.approx(reference.low)
    assert k3.checkerboard_logits_ci_high == pytest.approx(reference.high)
    assert k3.checkerboard_logits_ci_low > 0  # every seed gap is > 0, and 3 seeds see it
    assert rows[0].checkerboard_logits_ci_low is None  # the baseline
    table = write_summary(tmp_path, "r", rows)[0].read_text()  # summary.md
    assert "| variant | logit checkerboard, first val |" in table
    assert "0.04000 ± 0.01000 | +0.02900 [" in table
    assert k3.checkerboard_logits_verdict == "answered"
    assert min(gaps) > 0


def test_the_checkerboard_difference_is_over_the_seeds_both_configs_measured(tmp_path):
    """Its interval is seed-paired: the Δ shown with it is too (not the difference of means
    over unequal seeds, which fell outside its own interval)."""
    recipe = _kernel_recipe()
    ends = {(2, 0): 0.010, (2, 1): 0.012, (2, 2): None, (3, 0): 0.011, (3, 1): 0.013, (3, 2): 0.1}
    for variant in recipe.variants():
        _write_run(tmp_path / variant.name, 0.5, 0.9)
        metrics = json.loads((tmp_path / variant.name / "metrics.json").read_text())
        end = ends[int(variant.group), variant.seed]
        history = [] if end is None else [{"epoch": 0, "checkerboard_logits": 0.2}]
        metrics["history"] = history + (
            [] if end is None else [{"epoch": 1, "checkerboard_logits": end}]
        )
        (tmp_path / variant.name / "metrics.json").write_text(json.dumps(metrics))
    rows = build_rows(tmp_path, recipe.variants(), recipe.baseline_group())
    k3 = rows[1]
    assert k3.checkerboard_logits_delta == pytest.approx(0.001)  # seeds 0 and 1
    assert k3.checkerboard_logits_ci_low <= k3.checkerboard_logits_delta
    assert k3.checkerboard_logits_delta <= k3.checkerboard_logits_ci_high
    table = write_summary(tmp_path, "r", rows)[0].read_text()
    assert "| +0.00100 [+0.00100, +0.00100] |" in table


def test_a_finished_run_with_an_undefined_miou_is_left_out_of_the_mean(tmp_path):
    """No pixel scored: metrics.json holds mIoU null (NaN); the row averages the others."""
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
    rng = np.random.default_rng(11)
    for variant in recipe.variants():
        undefined = (variant.group, variant.seed) == ("concat", 1)
        confmats = np.zeros((3, 2, 2)) if undefined else random_confmats(rng, 3, 2)
        miou = None if undefined else 0.5 + variant.seed / 10
        _write_run(tmp_path / variant.name, miou, 0.9, confmats)  # the callback's zeros
    rows = build_rows(tmp_path, recipe.variants(), recipe.baseline_group())
    # the interval compares the runs that have an mIoU: seeds 0 and 2 against 0, 1, 2
    assert rows[1].delta_ci_seeds == "unpaired" and rows[1].delta_ci_low is not None
    assert rows[1].mIoU_mean == pytest.approx(0.6)  # seeds 0 and 2
    assert rows[1].mIoU_std == pytest.approx(np.std([0.5, 0.7], ddof=1))
    assert rows[1].per_class_iou["bg"] == pytest.approx(0.6)
