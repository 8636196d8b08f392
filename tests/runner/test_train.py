"""How many variants the runner trains at once (``seglit.runner.train.slots_and_threads``)."""

from __future__ import annotations

import pytest

from seglit.runner import train

CPU = {"trainer": {"accelerator": "cpu"}}
GPU = {"trainer": {"accelerator": "gpu"}}
AUTO = {"trainer": {"accelerator": "auto"}}


@pytest.mark.parametrize(
    ("requested", "waiting", "cores", "expected"),
    [
        (None, [CPU] * 9, 2, (2, 1)),  # the CPU default: two at a time, a core each
        (None, [CPU] * 9, 16, (2, 8)),
        (None, [CPU], 2, (1, None)),  # one variant left: it gets every core
        (None, [CPU] * 9, 1, (1, None)),
        (None, [GPU] * 9, 8, (1, None)),  # a GPU: one at a time unless --parallel says more
        (None, [AUTO] * 9, 8, (1, None)),  # "auto" may pick a GPU: one at a time
        (None, [CPU, GPU], 8, (1, None)),  # any variant off the CPU: one at a time
        (1, [CPU] * 9, 2, (1, None)),  # --parallel 1: one at a time with every core
        (4, [GPU] * 9, 2, (4, 1)),  # --parallel N is taken as given
    ],
)
def test_slots_and_threads(monkeypatch, requested, waiting, cores, expected) -> None:
    monkeypatch.setattr(train, "_cpu_count", lambda: cores)
    assert train.slots_and_threads(requested, waiting) == expected


def test_the_choice_never_asks_cuda(monkeypatch) -> None:
    """Asking CUDA would initialise it in the runner, and forked variants could not use it."""
    import torch

    def refuse() -> bool:
        raise AssertionError("CUDA was asked")

    monkeypatch.setattr(torch.cuda, "is_available", refuse)
    monkeypatch.setattr(torch.cuda, "device_count", refuse)
    monkeypatch.setattr(train, "_cpu_count", lambda: 2)
    assert train.slots_and_threads(None, [CPU, CPU]) == (2, 1)
    assert train.slots_and_threads(None, [AUTO, AUTO]) == (1, None)
