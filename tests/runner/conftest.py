"""Helpers of the runner tests: a tiny recipe and the runner as users start it."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml


def tiny_recipe(data_root: Path, **extra) -> dict:
    """Two variants (fusion sum / concat) of a tiny U-Net, 2 epochs on 16 synthetic images."""
    recipe = {
        "name": "tiny_skip",
        "ablation": {"model.net.init_args.fusion": ["sum", "concat"]},
        "seed_everything": 0,
        "trainer": {
            "accelerator": "cpu",
            "max_epochs": 2,
            "check_val_every_n_epoch": 1,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "log_every_n_steps": 1,
        },
        "model": {
            "net": {"class_path": "seglit.models.UNet", "init_args": {"base_width": 4, "depth": 2}},
            "optimizer": {
                "class_path": "torch.optim.SGD",
                "init_args": {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.0001},
            },
        },
        "data": {
            "class_path": "seglit.data.SyntheticVOCDataModule",
            "init_args": {
                "root": str(data_root),
                "num_train": 16,
                "num_val": 5,
                "batch_size": 8,
                "crop_size": 48,
                "num_workers": 0,
            },
        },
    }
    for key, value in extra.items():
        recipe[key] = value
    return recipe


@pytest.fixture(scope="session")
def write_recipe(synthetic_root):
    """``write_recipe(folder, **top_level_keys) -> Path``: the tiny recipe, keys replaced."""

    def write(folder: Path, name: str = "recipe.yaml", **extra) -> Path:
        path = Path(folder) / name
        path.write_text(yaml.safe_dump(tiny_recipe(synthetic_root, **extra), sort_keys=False))
        return path

    return write


def _run_fit(*args: str, cwd: Path, timeout: float = 400, env: dict | None = None, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "seglit.fit", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        **kwargs,
    )


@pytest.fixture(scope="session")
def run_fit():
    """``run_fit(*args, cwd=...)``: ``python -m seglit.fit ARGS`` as a user runs it (the
    variants forked from the runner); returns the ``CompletedProcess``."""
    return _run_fit


def _tree_digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not (p.parent.name == "logs" and p.name.startswith("debug"))
    }


@pytest.fixture(scope="session")
def tree_digest():
    """``tree_digest(folder)``: SHA-256 of every file, except W&B's own service logs (its
    background process may append a shutdown line after the training process exited)."""
    return _tree_digest
