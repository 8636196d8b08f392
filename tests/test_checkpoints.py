"""Checkpoints: atomic writes, an always-current last.ckpt, and the choice to resume from."""

from __future__ import annotations

import os
import time

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from seglit.checkpoints import AtomicCheckpointIO, LastCheckpoint, resume_checkpoint
from seglit.run_folder import checkpoint_readable


def test_atomic_save_keeps_the_old_checkpoint_when_the_write_fails(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"step": 1}, path)
    assert checkpoint_readable(path)

    def dies_half_way(obj, handle, *args, **kwargs):
        handle.write(b"PK\x03\x04 half a zip")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", dies_half_way)
    with pytest.raises(OSError, match="No space left"):
        io.save_checkpoint({"step": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"step": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


def _save(path, step: int) -> None:
    torch.save({"global_step": step}, path)


def test_resume_sets_unreadable_checkpoints_aside_and_takes_the_newest_readable(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    _save(folder / "best-epoch000-step000004.ckpt", 4)
    time.sleep(0.01)
    _save(folder / "best-epoch002-step000012.ckpt", 12)
    _save(folder / "last.ckpt", 16)
    data = (folder / "last.ckpt").read_bytes()
    (folder / "last.ckpt").write_bytes(data[: len(data) // 2])  # truncated by a kill
    chosen, notes = resume_checkpoint(tmp_path)
    assert chosen == folder / "best-epoch002-step000012.ckpt"
    assert (folder / "last.ckpt.corrupt").exists() and not (folder / "last.ckpt").exists()
    assert any("last.ckpt cannot be read" in n and "last.ckpt.corrupt" in n for n in notes)
    assert any("resuming from best-epoch002-step000012.ckpt" in n for n in notes)
    assert resume_checkpoint(tmp_path)[0] == chosen  # the corrupt file is never tried again


def test_resume_prefers_a_readable_last_checkpoint(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    _save(folder / "last.ckpt", 8)
    time.sleep(0.01)
    _save(folder / "best-epoch001-step000008.ckpt", 8)
    assert resume_checkpoint(tmp_path) == (folder / "last.ckpt", [])
    assert resume_checkpoint(tmp_path / "nothing") == (None, [])


class WorseEveryEpoch(L.LightningModule):
    """val/mIoU only gets worse, so the best checkpoint stays at epoch 0."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch, batch_idx):  # noqa: D102
        return (self.weight - batch).square().mean()

    def validation_step(self, batch, batch_idx) -> None:  # noqa: D102
        self.log("val/mIoU", 1.0 / (self.current_epoch + 1))

    def configure_optimizers(self):  # noqa: D102
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _fit_with_best_and_last(tmp_path, module: L.LightningModule) -> L.Trainer:
    """3 epochs of 2 steps, ``best.ckpt`` by val/mIoU and ``last.ckpt``, written as seglit does."""
    data = torch.utils.data.DataLoader(torch.ones(4, 1), batch_size=2)
    best = ModelCheckpoint(dirpath=tmp_path, monitor="val/mIoU", mode="max", filename="best")
    trainer = L.Trainer(
        max_epochs=3,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[best, LastCheckpoint(tmp_path)],
    )
    trainer.strategy.checkpoint_io = AtomicCheckpointIO()
    trainer.fit(module, data, data)
    return trainer


def test_last_checkpoint_is_current_after_every_validation_without_improvement(tmp_path):
    trainer = _fit_with_best_and_last(tmp_path, WorseEveryEpoch())
    last = torch.load(tmp_path / "last.ckpt", weights_only=False)
    assert last["global_step"] == trainer.global_step == 6
    assert torch.load(tmp_path / "best.ckpt", weights_only=False)["global_step"] == 2
    assert sorted(os.listdir(tmp_path)) == ["best.ckpt", "last.ckpt"]


class BetterEveryEpoch(WorseEveryEpoch):
    def validation_step(self, batch, batch_idx) -> None:  # noqa: D102
        self.log("val/mIoU", float(self.current_epoch + 1))


def test_last_checkpoint_after_an_improvement_holds_the_best_ones_state(tmp_path):
    trainer = _fit_with_best_and_last(tmp_path, BetterEveryEpoch())
    last = torch.load(tmp_path / "last.ckpt", weights_only=False)
    assert last["global_step"] == trainer.global_step == 6
    (state,) = [v for k, v in last["callbacks"].items() if "'monitor': 'val/mIoU'" in k]
    assert state["best_model_score"] == 3.0  # the best callback's state is already the new best
