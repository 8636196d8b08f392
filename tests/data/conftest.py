"""Fixtures shared by the data tests: small synthetic trees on disk."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from seglit.data.synthetic import write_synthetic_voc


@pytest.fixture(scope="session")
def synthetic_voc_root(tmp_path_factory) -> Path:
    """A read-only synthetic VOC tree: 6 train and 5 val images."""
    return write_synthetic_voc(tmp_path_factory.mktemp("voc"), num_train=6, num_val=5, seed=1)


@pytest.fixture
def voc_copy(synthetic_voc_root, tmp_path) -> Path:
    """A private copy of the synthetic VOC tree that a test may damage."""
    shutil.copytree(synthetic_voc_root, tmp_path / "copy")
    return tmp_path / "copy"
