"""Shared test setup: no network, W&B offline, every cache inside pytest's temp dir."""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
import yaml


def _private_temp_dir() -> None:
    """Send every temp file of this process and its children into one folder removed at exit.

    W&B, Lightning and the runner's children create temp folders (``tmp*wandb-media``,
    service sockets, ...) that outlive the tests; inside this folder they leave nothing
    behind in the system temp dir. Each pytest process (the xdist controller and every
    worker) has its own.
    """
    private = tempfile.mkdtemp(prefix="seglit-tests-")
    os.environ["TMPDIR"] = tempfile.tempdir = private
    atexit.register(shutil.rmtree, private, ignore_errors=True)


_private_temp_dir()

# The test helpers beside this file (wandb_records: the .wandb reader) import as top-level
# modules, as tests/launcher/conftest.py does for local_slurm (tests import in importlib mode).
sys.path.append(str(Path(__file__).parent))

os.environ["HF_HUB_OFFLINE"] = "1"  # never the network, whatever the shell says
os.environ["WANDB_MODE"] = "offline"
os.environ["WANDB_SILENT"] = "true"
os.environ.pop("WANDB_API_KEY", None)


def _share_the_cores_between_xdist_workers() -> None:
    """Give each pytest-xdist worker (and what it starts) its share of the CPU cores.

    Two workers that each run torch's default two OpenMP threads on two cores make tiny ops
    tens of times slower (threads spin at barriers waiting for a preempted peer).
    """
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers <= 1:
        return
    threads = str(max(1, (os.cpu_count() or 1) // workers))
    os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = threads
    import torch

    torch.set_num_threads(int(threads))


_share_the_cores_between_xdist_workers()

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session", autouse=True)
def _isolated_caches(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep synthetic data, torch hub and W&B settings out of the user's home."""
    cache = tmp_path_factory.mktemp("cache")
    os.environ["SEGLIT_CACHE"] = str(cache / "seglit")
    os.environ["TORCH_HOME"] = str(cache / "torch")
    os.environ["HF_HOME"] = str(cache / "hf")  # smp/timm weights: never the user's cache
    os.environ["WANDB_CONFIG_DIR"] = str(cache / "wandb_config")
    os.environ["WANDB_CACHE_DIR"] = str(cache / "wandb_cache")


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthetic VOC tree (16 train images, an odd 5 val images)."""
    from seglit.data import write_synthetic_voc

    root = tmp_path_factory.mktemp("synthetic_voc")
    write_synthetic_voc(root, num_train=16, num_val=5, seed=0)
    return root


@pytest.fixture
def make_fit_config(synthetic_root: Path):
    """Factory of tiny ``fit`` configs on :func:`synthetic_root` (see :func:`tiny_fit_config`)."""

    def make(out_dir: Path, **trainer: object) -> dict:
        return tiny_fit_config(synthetic_root, out_dir, **trainer)

    return make


def tiny_fit_config(data_root: Path, out_dir: Path, **trainer: object) -> dict:
    """A seglit ``fit`` config that trains a tiny U-Net for one epoch on synthetic data."""
    return {
        "seed_everything": 0,
        "trainer": {
            "accelerator": "cpu",
            "devices": 1,
            "max_epochs": 1,
            "logger": False,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "default_root_dir": str(out_dir),
            **trainer,
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
                "batch_size": 4,
                "crop_size": 48,
                "num_workers": 0,
            },
        },
        "checkpoint": {"dirpath": str(out_dir / "checkpoints")},
        "run_summary": {"dirpath": str(out_dir)},
    }


def tiny_recipe(data_root: Path, **extra: object) -> dict:
    """A recipe of two variants (``fusion`` sum / concat) of :func:`tiny_fit_config`'s U-Net,
    2 epochs at batch 8, outputs placed by the runner; top-level ``extra`` keys replace
    the recipe's."""
    config = tiny_fit_config(data_root, Path())
    del config["checkpoint"], config["run_summary"]
    trainer = config["trainer"]
    for key in ("devices", "logger", "default_root_dir"):
        del trainer[key]
    trainer.update(max_epochs=2, check_val_every_n_epoch=1, log_every_n_steps=1)
    config["data"]["init_args"]["batch_size"] = 8
    recipe = {"name": "tiny_skip", "ablation": {"model.net.init_args.fusion": ["sum", "concat"]}}
    return {**recipe, **config, **extra}


@pytest.fixture(scope="session")
def write_tiny_recipe(synthetic_root: Path):
    """``write_tiny_recipe(path, **top_level_keys) -> path``: :func:`tiny_recipe` as YAML."""

    def write(path: Path, **extra: object) -> Path:
        path = Path(path)
        path.write_text(yaml.safe_dump(tiny_recipe(synthetic_root, **extra), sort_keys=False))
        return path

    return write


@pytest.fixture(scope="session")
def tiny_config():
    """:func:`tiny_fit_config` itself, for session- or module-scoped fixtures."""
    return tiny_fit_config


@pytest.fixture(scope="session")
def finished_run(tmp_path_factory: pytest.TempPathFactory, synthetic_root: Path) -> Path:
    """A finished variant trained for one epoch through the Lightning CLI: ``config.yaml``,
    ``checkpoints/best-*.ckpt`` and ``last.ckpt``, ``metrics.json``."""
    import json

    from seglit.cli import main as seglit_main
    from seglit.run_folder import CONFIG_FILE, METRICS_FILE

    run = tmp_path_factory.mktemp("runs") / "tiny" / "unet-s0"
    run.mkdir(parents=True)
    (run / CONFIG_FILE).write_text(yaml.safe_dump(tiny_fit_config(synthetic_root, run)))
    seglit_main(["fit", "--config", str(run / CONFIG_FILE)])
    assert json.loads((run / METRICS_FILE).read_text())["status"] == "finished"
    return run
