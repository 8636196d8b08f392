"""Helpers of the summary statistics tests (tests/summary/): random confusion matrices and
the summary's interval in one call."""

from __future__ import annotations

import numpy as np

from seglit.summary.stats import delta_interval


def interval(runs, baseline_runs, *options, **named) -> tuple[float, float, float] | None:
    """``(delta, low, high)`` of the summary's interval, or ``None`` for different image sets
    (the arguments are :func:`~seglit.summary.stats.delta_interval`')."""
    found = delta_interval(runs, baseline_runs, *options, **named)
    return None if found is None else (found.delta, found.low, found.high)


def random_confmats(rng: np.random.Generator, n: int, c: int = 3) -> np.ndarray:
    """``n`` random ``c x c`` confusion matrices of small counts."""
    return rng.integers(0, 20, size=(n, c, c))
