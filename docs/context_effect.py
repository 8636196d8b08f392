"""How much of a config's gain needs the context the lab's cue asks for: a difference of gaps.

``docs/ablations.md`` runs ``ablation_dilation --smoke context`` twice: on the ``context``
factor, and in the control where every background pixel has the
cue's colour (``--data.init_args.context_cue_share=1.0``: the same scenes, but the cue
touches every object). A config's gap to the baseline in the control is what it gains
without long-range context; the difference of the two gaps is the part that needs it::

    cd runs && python ../docs/context_effect.py smoke/ablation_dilation-context \\
        control/ablation_dilation-context

The field-of-view smoke (``ablation_dilation --smoke``) and its adjacent-cue control
(``--data.init_args.cue_distance=2``) are compared the same way.

The interval is the summary's (:func:`seglit.summary.stats.seed_image_interval`) over four
configs: the seed part from the per-seed differences of gaps (the four runs of a seed
paired), the image part from resampling the validation images (paired by name, since the
control draws the same scenes). Only seeds every folder finished are used.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import numpy as np

from seglit.summary.rows import load_image_confmats
from seglit.summary.stats import (
    BOOTSTRAP_SAMPLES,
    bootstrap_image_weights,
    seed_image_interval,
    weighted_miou,
)


def seed_confmats(recipe_dir: Path, config: str) -> tuple[list[str], dict[int, np.ndarray]]:
    """The image names (sorted) and, per seed, the run's per-image confusion matrices
    ``(n, C, C)`` in that order.

    Raises:
        ValueError: two runs of the config scored different images.
    """
    runs, names = {}, None
    for run_dir in sorted(recipe_dir.glob(f"{config}-s*")):
        match = re.fullmatch(rf"{re.escape(config)}-s(\d+)", run_dir.name)
        loaded = load_image_confmats(run_dir) if match else None
        if loaded is not None:
            run_names, confmats = loaded
            if names is not None and sorted(run_names) != names:
                raise ValueError(f"{run_dir} scored other images than the runs before it")
            names = sorted(run_names)
            runs[int(match[1])] = confmats[np.argsort(run_names)].astype(np.float64)
    return names or [], runs


def difference_of_gaps(
    effect: dict[str, dict[int, np.ndarray]],
    control: dict[str, dict[int, np.ndarray]],
    variant: str,
    baseline: str,
    samples: int = BOOTSTRAP_SAMPLES,
    seed: int = 0,
) -> tuple[float, float, float, list[int]]:
    """``(variant - baseline) on effect - (variant - baseline) on control``, with a 95% CI.

    Args:
        effect: Config -> seed -> per-image confmats, on the factor under test.
        control: The same in the control.
        variant: The config whose gain is split.
        baseline: The config it is compared with.
        samples: Bootstrap resamples.
        seed: Seed of the resampling.

    Returns:
        ``(difference, ci_low, ci_high, seeds used)``.

    Raises:
        ValueError: no seed has all four runs, or one seed of one image.
    """
    sides = [effect[variant], effect[baseline], control[variant], control[baseline]]
    seeds = sorted(set.intersection(*(set(runs) for runs in sides)))
    if not seeds:
        raise ValueError(f"no seed has finished {variant} and {baseline} in both folders")
    n = sides[0][seeds[0]].shape[0]
    rng = np.random.default_rng(seed)
    weights = bootstrap_image_weights(n, samples, rng)

    def miou(runs: dict[int, np.ndarray]) -> np.ndarray:  # (samples + 1, seeds)
        return np.stack([weighted_miou(weights, runs[s]) for s in seeds], 1)

    a, b, c, d = (miou(runs) for runs in sides)
    per_seed = (a - b) - (c - d)  # (samples + 1, seeds)
    found = seed_image_interval(per_seed, np.zeros_like(per_seed), n, pair_seeds=True)
    if found is None:
        raise ValueError("one seed and one image: nothing measures the difference's spread")
    return found.delta, found.low, found.high, seeds


def main(argv: list[str] | None = None) -> int:
    """Print the difference of gaps for ``--variant`` against ``--baseline``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("effect", type=Path, help="recipe folder on the factor under test")
    parser.add_argument("control", type=Path, help="recipe folder of the control")
    parser.add_argument("--variant", default="os16-no_pooling")
    parser.add_argument("--baseline", default="os16")
    args = parser.parse_args(argv)
    loaded = {
        (folder, cfg): seed_confmats(folder, cfg)
        for folder in (args.effect, args.control)
        for cfg in (args.variant, args.baseline)
    }
    image_sets = {tuple(names) for names, runs in loaded.values() if runs}
    if len(image_sets) > 1:
        raise ValueError(
            f"the runs in {args.effect} and {args.control} scored different validation images: "
            "the gaps must be measured on the same images to be paired"
        )
    effect, control = (
        {cfg: loaded[folder, cfg][1] for cfg in (args.variant, args.baseline)}
        for folder in (args.effect, args.control)
    )
    diff, low, high, seeds = difference_of_gaps(effect, control, args.variant, args.baseline)
    print(
        f"({args.variant} - {args.baseline}) on {args.effect} minus the same on {args.control},"
        f" seeds {seeds}: {diff:+.3f} [{low:+.3f}, {high:+.3f}]"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
