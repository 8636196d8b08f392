"""Real DDP on 2 CPU processes (gloo): every val image scored exactly once.

The 2-process validation runs through the seglit CLI, launched by Lightning's own launcher
(``--trainer.devices=2 --trainer.strategy=ddp``) and by ``torchrun`` as on a cluster, and
through a plain ``lightning.Trainer(strategy="ddp", devices=2)`` with Lightning's defaults
(its distributed sampler on), with a seglit datamodule and with a user's own loader.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys

import pytest
import yaml


def _run(cmd: list[str], cwd) -> None:
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=cwd)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]


@pytest.fixture(scope="module")
def trained(tmp_path_factory, synthetic_root, tiny_config):
    """A checkpoint of a tiny model and its 1-process validation metrics."""
    tmp = tmp_path_factory.mktemp("ddp")
    config = tiny_config(synthetic_root, tmp / "train")
    (tmp / "fit.yaml").write_text(yaml.safe_dump(config))
    _run([sys.executable, "-m", "seglit", "fit", "--config", str(tmp / "fit.yaml")], tmp)
    ckpt = tmp / "train" / "checkpoints" / "last.ckpt"
    one = _validate(tiny_config, tmp, synthetic_root, ckpt, "one", devices=1)
    return tmp, ckpt, one


def _validate(tiny_config, tmp, root, ckpt, name, devices, launcher="lightning"):
    out = tmp / name
    config = tiny_config(root, out, devices=devices, strategy="ddp" if devices > 1 else "auto")
    path = tmp / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    args = ["-m", "seglit", "validate", "--config", str(path), "--ckpt_path", str(ckpt)]
    if launcher == "torchrun":
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--nnodes=1",
            "--nproc-per-node=2",
            "--rdzv-backend=c10d",
            "--rdzv-endpoint=localhost:0",
            *args,
        ]
    else:
        cmd = [sys.executable, *args]
    _run(cmd, tmp)
    # a validate job never writes over the run: it gets <run>/validate/version_<n>
    return json.loads((out / "validate" / "version_0" / "validate_metrics.json").read_text())


@pytest.mark.timeout(600)
@pytest.mark.parametrize("launcher", ["lightning", "torchrun"])
def test_two_cpu_processes_score_the_odd_val_set_like_one(
    trained, synthetic_root, tiny_config, launcher
):
    tmp, ckpt, one = trained
    two = _validate(
        tiny_config, tmp, synthetic_root, ckpt, f"two-{launcher}", devices=2, launcher=launcher
    )
    assert one["num_images"] == two["num_images"] == 5  # odd: 3 images on rank 0, 2 on rank 1
    assert len(set(two["image_names"])) == 5  # none scored twice
    assert two["confmat"] == one["confmat"]
    assert two["mIoU"] == one["mIoU"]


PLAIN_TRAINER = '''
import json
import sys

import lightning as L
import torch

from seglit.data import SyntheticVOCDataModule, VOCSegmentationDataset
from seglit.data.transforms import build_eval_transform, pad_collate
from seglit.models import UNet
from seglit.module import SegmentationModule

root, ckpt, out = sys.argv[1:4]


class OwnLoader(L.LightningDataModule):
    """A user's datamodule: a plain DataLoader, Lightning adds its padded sampler."""

    def val_dataloader(self):
        data = VOCSegmentationDataset(root, "val", build_eval_transform(), num_classes=5)
        return torch.utils.data.DataLoader(data, batch_size=1, collate_fn=pad_collate)


results = {}
for name, datamodule in [
    ("seglit", SyntheticVOCDataModule(root=root, num_train=16, num_val=5, num_workers=0)),
    ("own", OwnLoader()),
]:
    module = SegmentationModule(UNet(5, base_width=4, depth=2), num_classes=5)
    trainer = L.Trainer(
        accelerator="cpu",
        strategy="ddp",
        devices=2,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.validate(module, datamodule=datamodule, ckpt_path=ckpt, verbose=False)
    sampler = type(trainer.val_dataloaders.sampler).__name__
    results[name] = {
        "mIoU": module.last_eval.metrics["mIoU"],
        "images": module.last_eval.image_names,
        "confmat": module.last_eval.confmat.tolist(),
        "sampler": sampler,
    }
if trainer.is_global_zero:
    with open(out, "w") as f:
        json.dump(results, f)
'''


@pytest.mark.timeout(600)
def test_a_plain_lightning_trainer_with_default_settings_scores_each_image_once(
    trained, synthetic_root, tmp_path
):
    tmp, ckpt, one = trained
    (tmp_path / "plain.py").write_text(PLAIN_TRAINER)
    out = tmp_path / "plain.json"
    _run(
        [sys.executable, str(tmp_path / "plain.py"), str(synthetic_root), str(ckpt), str(out)],
        tmp_path,
    )
    results = json.loads(out.read_text())
    for name, result in results.items():
        assert sorted(result["images"]) == sorted(one["image_names"]), name
        assert result["confmat"] == one["confmat"], name  # to the last pixel
        assert result["mIoU"] == one["mIoU"], name
    # seglit's own sampler is left alone; the user's loader got Lightning's padded one
    assert results["seglit"]["sampler"] == "UnpaddedDistributedSampler"
    assert results["own"]["sampler"] == "DistributedSampler"


LOSS_RECORDER = '''
import json
from pathlib import Path

import lightning as L


class LossRecorder(L.Callback):
    """Writes every training batch's loss of this rank to rank<N>.json at the end."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.losses = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))

    def on_train_end(self, trainer, pl_module):
        (self.path / f"rank{trainer.global_rank}.json").write_text(json.dumps(self.losses))
'''


@pytest.mark.timeout(600)
def test_two_cpu_processes_log_the_epoch_training_loss_over_both(
    tmp_path, synthetic_root, tiny_config
):
    (tmp_path / "loss_recorder.py").write_text(LOSS_RECORDER)  # importable: cwd of `-m`
    config = tiny_config(synthetic_root, tmp_path / "out", devices=2, strategy="ddp")
    config["trainer"]["logger"] = {
        "class_path": "lightning.pytorch.loggers.CSVLogger",
        "init_args": {"save_dir": str(tmp_path), "name": "csv", "version": 0},
    }
    config["trainer"]["log_every_n_steps"] = 1
    config["trainer"]["callbacks"] = [
        {"class_path": "loss_recorder.LossRecorder", "init_args": {"path": str(tmp_path)}}
    ]
    (tmp_path / "fit.yaml").write_text(yaml.safe_dump(config))
    _run([sys.executable, "-m", "seglit", "fit", "--config", str(tmp_path / "fit.yaml")], tmp_path)

    losses = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [len(x) for x in losses] == [2, 2]  # 16 images: 8 per process, batches of 4
    with open(tmp_path / "csv" / "version_0" / "metrics.csv") as f:
        rows = list(csv.DictReader(f))
    (epoch_loss,) = [float(r["train/loss_epoch"]) for r in rows if r.get("train/loss_epoch")]
    every = losses[0] + losses[1]
    assert epoch_loss == pytest.approx(sum(every) / len(every), rel=1e-6)
    assert epoch_loss != pytest.approx(sum(losses[0]) / 2, rel=1e-6)  # not rank 0's alone
