"""docs/context_effect.py: the difference of gaps against a hand computation."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from seglit.summary.stats import mean_iou

_SCRIPT = Path(__file__).resolve().parents[1] / "docs" / "context_effect.py"
_spec = importlib.util.spec_from_file_location("context_effect", _SCRIPT)
context_effect = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(context_effect)


def _runs(rng, seeds, n=5):
    return {s: rng.integers(0, 20, size=(n, 3, 3)).astype(np.float64) for s in seeds}


def test_difference_of_gaps_matches_a_plain_loop():
    rng = np.random.default_rng(0)
    effect = {"v": _runs(rng, [0, 1, 2]), "b": _runs(rng, [0, 1, 2])}
    control = {"v": _runs(rng, [0, 1, 2, 3]), "b": _runs(rng, [0, 1, 2])}  # seed 3: not in all
    diff, low, high, seeds = context_effect.difference_of_gaps(
        effect, control, "v", "b", samples=100, seed=4
    )
    assert seeds == [0, 1, 2]

    def gap(side, s, idx):
        return mean_iou(side["v"][s][idx].sum(0)) - mean_iou(side["b"][s][idx].sum(0))

    every = np.arange(5)
    assert diff == pytest.approx(
        np.mean([gap(effect, s, every) - gap(control, s, every) for s in seeds])
    )
    per_seed = [gap(effect, s, every) - gap(control, s, every) for s in seeds]
    draw = np.random.default_rng(4)  # the image resamples, in order
    images = [draw.integers(0, 5, 5) for _ in range(100)]
    draws = [np.mean([gap(effect, s, i) - gap(control, s, i) for s in seeds]) for i in images]
    seed_var, image_var = np.var(per_seed, ddof=1) / 3, np.var(draws, ddof=1)
    df = (seed_var + image_var) ** 2 / (seed_var**2 / 2 + image_var**2 / 4)  # 3 seeds, 5 images
    half = stats.t.ppf(0.975, df) * np.sqrt(seed_var + image_var)
    assert (low, high) == pytest.approx((diff - half, diff + half))
    with pytest.raises(ValueError, match="no seed has finished v and b in both folders"):
        context_effect.difference_of_gaps(effect, {"v": {}, "b": {}}, "v", "b")


def test_reads_run_folders_and_prints(tmp_path, capsys):
    rng = np.random.default_rng(1)
    names = np.array(["b", "a", "c"])  # not sorted: the reader sorts images by name
    saved = {}
    for folder in ("effect", "control"):
        for config in ("os16", "os16-no_pooling"):
            for seed in (0, 1):
                run = tmp_path / folder / f"{config}-s{seed}"
                run.mkdir(parents=True)
                confmats = saved[folder, config, seed] = _runs(rng, [0], 3)[0]
                np.savez(run / "val_image_confmats.npz", names=names, confmats=confmats)
    (tmp_path / "effect" / "os16-no_pooling-old-s0").mkdir()  # another config's name: ignored
    image_names, read = context_effect.seed_confmats(tmp_path / "effect", "os16")
    assert image_names == ["a", "b", "c"] and sorted(read) == [0, 1]
    assert np.array_equal(read[1], saved["effect", "os16", 1][[1, 0, 2]])  # a, b, c
    assert context_effect.main([str(tmp_path / "effect"), str(tmp_path / "control")]) == 0
    assert "seeds [0, 1]:" in capsys.readouterr().out
    # the control scored other images: its gaps cannot be paired with the factor's
    run = tmp_path / "control" / "os16-s1"
    np.savez(run / "val_image_confmats.npz", names=np.array(["x", "y", "z"]), confmats=confmats)
    with pytest.raises(ValueError, match="scored other images than the runs before it"):
        context_effect.seed_confmats(tmp_path / "control", "os16")
    for seed in (0, 1):
        run = tmp_path / "control" / f"os16-s{seed}"
        np.savez(run / "val_image_confmats.npz", names=np.array(["x", "y", "z"]), confmats=confmats)
    with pytest.raises(ValueError, match="scored different validation images"):
        context_effect.main([str(tmp_path / "effect"), str(tmp_path / "control")])
