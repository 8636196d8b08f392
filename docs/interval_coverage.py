"""How often the summary's 95% interval holds the true difference, by simulation.

``docs/ablations.md`` quotes this script's output. Each simulated experiment makes two
configs with no true difference (Δ = 0): per-image confusion matrices of 30 validation
images and 4 classes (some absent from some images) for ``k`` seeds each, from a model
whose per-pixel accuracy varies with the config's seed (training noise) and with the
image (which images are in the validation set). The summary's own functions
(:func:`seglit.summary.stats.delta_interval`, seeds paired) give the interval; the
table says in how many experiments it holds 0, and how often the verdict says
``answered`` (a false positive here)::

    python docs/interval_coverage.py [--experiments 500]
"""

from __future__ import annotations

import argparse

import numpy as np

from seglit.summary.stats import ANSWERED, delta_interval, power

IMAGES, CLASSES, PIXELS = 30, 4, 2000

SCENARIOS = {
    "training noise dominates": {"seed_sd": 0.15, "image_sd": 0.05},
    "both": {"seed_sd": 0.08, "image_sd": 0.15},
    "image sampling dominates": {"seed_sd": 0.02, "image_sd": 0.3},
}
"""Standard deviations (logit scale) of a seed's accuracy shift and of its per-image noise."""

SEEDS = (1, 2, 3, 5, 8)


def _images(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Each image's pixels per class (class 0 always present) and its difficulty."""
    present = rng.random((IMAGES, CLASSES)) > 0.3
    present[:, 0] = True
    counts = rng.gamma(2.0, 1.0, (IMAGES, CLASSES)) * present
    counts = PIXELS * counts / counts.sum(1, keepdims=True)
    return counts, rng.normal(0, 0.3, (IMAGES, 1))


def _run(rng, counts, difficulty, shared: float, seed_sd: float, image_sd: float) -> np.ndarray:
    """One seed run's expected confusion matrices ``(images, C, C)``: errors spread evenly."""
    logit = 1.5 + shared + rng.normal(0, seed_sd) + difficulty
    accuracy = 1 / (1 + np.exp(-(logit + rng.normal(0, image_sd, (IMAGES, CLASSES)))))
    confmats = np.repeat((counts * (1 - accuracy) / (CLASSES - 1))[:, :, None], CLASSES, 2)
    confmats[:, np.arange(CLASSES), np.arange(CLASSES)] = counts * accuracy
    return confmats


def coverage(seeds: int, scenario: dict[str, float], experiments: int) -> tuple[float, float]:
    """The share of experiments whose interval holds 0, and whose verdict is ``answered``."""
    rng = np.random.default_rng(seeds)
    names = [f"i{i}" for i in range(IMAGES)]
    held, answered = 0, 0
    for experiment in range(experiments):
        counts, difficulty = _images(rng)
        shared = rng.normal(0, 0.1, seeds)  # what a seed does to both configs (paired)
        config, baseline = (
            [(names, _run(rng, counts, difficulty, s, **scenario)) for s in shared]
            for _ in range(2)
        )
        found = delta_interval(config, baseline, seed=experiment, pair_seeds=True)
        held += found.low <= 0 <= found.high
        verdict = power(found.delta, found.se, seeds, found.low, found.high, found.df)[2]
        answered += verdict == ANSWERED
    return held / experiments, answered / experiments


def main(argv: list[str] | None = None) -> str:
    """Print (and return) the coverage table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--experiments", type=int, default=500)
    args = parser.parse_args(argv)
    lines = [
        "| seeds per config | " + " | ".join(SCENARIOS) + " |",
        "|---|" + "---|" * len(SCENARIOS),
    ]
    for seeds in SEEDS:
        cells = [coverage(seeds, s, args.experiments) for s in SCENARIOS.values()]
        lines.append(
            f"| {seeds} | "
            + " | ".join(f"{held:.0%} ({answered:.0%} answered)" for held, answered in cells)
            + " |"
        )
    table = "\n".join(lines)
    print(table)
    return table


if __name__ == "__main__":
    main()
