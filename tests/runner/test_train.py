"""How many variants the runner trains at once (``seglit.runner.train.slots_and_threads``)."""

from __future__ import annotations

import pytest

from seglit.runner import train


@pytest.mark.parametrize(
    ("requested", "waiting", "cores", "cuda", "expected"),
    [
        (None, 9, 2, False, (2, 1)),  # the CPU default: two at a time, a core each
        (None, 9, 16, False, (2, 8)),
        (None, 1, 2, False, (1, None)),  # one variant left: it gets every core
        (None, 9, 1, False, (1, None)),
        (None, 9, 8, True, (1, None)),  # a GPU: one at a time unless --parallel says more
        (1, 9, 2, False, (1, None)),  # --parallel 1: one at a time with every core
        (4, 9, 2, True, (4, 1)),  # --parallel N is taken as given
    ],
)
def test_slots_and_threads(monkeypatch, requested, waiting, cores, cuda, expected) -> None:
    monkeypatch.setattr(train, "_cpu_count", lambda: cores)
    monkeypatch.setattr(train, "_cuda_available", lambda: cuda)
    assert train.slots_and_threads(requested, waiting) == expected
