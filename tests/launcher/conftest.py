"""The launcher tests' fixtures: a single-node SLURM on localhost, started once per session."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from local_slurm import LocalSlurm, SlurmUnavailable, start_local_slurm  # noqa: E402


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory):
    """A running single-node SLURM (``slurmctld``, ``slurmd``, ``munged``) whose state lives
    in a temp folder; ``SLURM_CONF`` points the clients at it. Skips with the reason when it
    cannot start (packages not installed, not root); stops the daemons at the end."""
    try:
        cluster: LocalSlurm = start_local_slurm(tmp_path_factory.mktemp("slurm"))
    except SlurmUnavailable as err:
        pytest.skip(f"no local SLURM: {err}")
    previous = os.environ.get("SLURM_CONF")
    os.environ["SLURM_CONF"] = str(cluster.conf)
    try:
        yield cluster
    finally:
        cluster.stop()
        if previous is None:
            os.environ.pop("SLURM_CONF", None)
        else:
            os.environ["SLURM_CONF"] = previous
