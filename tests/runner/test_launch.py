"""Fork or subprocess (``seglit.runner.launch.can_fork``): asked per run, never inherited."""

from __future__ import annotations

import pytest

from seglit.runner import launch

ONE_CPU = {"trainer": {"accelerator": "cpu", "devices": 1}}
DDP = {"trainer": {"accelerator": "cpu", "devices": 2, "strategy": "ddp"}}


@pytest.mark.parametrize(
    ("parent_threads", "fork", "resolved", "expected"),
    [
        (4, True, ONE_CPU, True),  # the command line's runner, one process: fork
        (4, False, ONE_CPU, False),  # a later run from Python in the same process: subprocess
        (None, True, ONE_CPU, False),  # keep_parent_fork_safe never called
        (4, True, DDP, False),  # Lightning's DDP launcher restarts the command line
    ],
)
def test_can_fork(monkeypatch, parent_threads, fork, resolved, expected) -> None:
    monkeypatch.setattr(launch, "_parent_threads", parent_threads)
    assert launch.can_fork(resolved, fork) is expected
