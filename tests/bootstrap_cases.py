"""Helpers of the summary statistics tests (tests/summary/): random confusion matrices and
the bootstrap interval in one call."""

from __future__ import annotations

import numpy as np

from seglit.summary.stats import bootstrap_delta_draws, bootstrap_interval


def interval(runs, baseline_runs, *options, **named) -> tuple[float, float, float] | None:
    """``(delta, low, high)`` of the two-level bootstrap, or ``None`` for different image sets
    (the arguments are :func:`~seglit.summary.stats.bootstrap_delta_draws`')."""
    draws = bootstrap_delta_draws(runs, baseline_runs, *options, **named)
    return None if draws is None else bootstrap_interval(draws)


def random_confmats(rng: np.random.Generator, n: int, c: int = 3) -> np.ndarray:
    """``n`` random ``c x c`` confusion matrices of small counts."""
    return rng.integers(0, 20, size=(n, c, c))
