"""The daily loop as a user meets it: a single run's console, ``seglit test``'s statement of
what it scored, and ``python -m seglit --help``. Real processes, real files."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def seglit(*args: object, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "seglit", *map(str, args)],
        capture_output=True, text=True, timeout=300, cwd=REPO, env=env,
    )  # fmt: skip


def test_a_single_run_prints_its_result_and_where_it_went_without_third_party_chatter(
    tmp_path, make_fit_config
):
    run = tmp_path / "run"
    config = make_fit_config(run)
    config["trainer"]["logger"] = {
        "class_path": "seglit.wandb.logger.WandbLogger",
        "init_args": {"save_dir": str(run), "mode": "offline"},
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SILENT"}  # as a user has it
    fit = seglit("fit", "--config", path, env=env)
    assert fit.returncode == 0, fit.stderr
    console = fit.stdout + fit.stderr
    assert "wandb:" not in console  # no banner, history sparklines or second sync hint
    assert "srun" not in console and "dirpath has changed" not in console
    assert console.count("wandb sync ") == 1  # seglit's own line
    assert "seglit: fit finished: best val mIoU " in console and f"results in {run}" in console

    test = seglit("test", "--config", path, "--ckpt_path", run / "checkpoints" / "last.ckpt")
    assert test.returncode == 0, test.stderr
    assert (
        "seglit: test scored the 'val' split of SyntheticVOCDataModule (5 images), the "
        "validation images (no separate test split is used)" in test.stdout
    )
    (metrics,) = run.glob("test/version_*/test_metrics.json")
    assert json.loads(metrics.read_text())["split"] == "val"


def test_python_m_seglit_help_names_the_command_seglit():
    result = seglit("--help")
    assert result.returncode == 0
    # the command family first (seglit.commands), then the Lightning CLI's own usage
    assert result.stdout.startswith("seglit commands:\n  seglit run RECIPE")
    assert "\nusage: seglit " in result.stdout and "__main__" not in result.stdout
