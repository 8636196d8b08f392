"""Lightning callbacks that seglit adds to every run.

* :class:`Checkpoint` keeps the best checkpoints by ``val/mIoU`` and an always-current
  ``last.ckpt`` to resume from.
* :class:`TrainSpeedMonitor` logs training throughput (images/s) and peak memory.
* :class:`RunSummaryWriter` keeps the validation history and writes ``metrics.json``
  (and the best epoch's per-image confusion matrices) when ``fit`` finishes, and
  ``validate_metrics.json`` / ``test_metrics.json`` after ``seglit validate`` / ``test``.
  Its state is saved in checkpoints, so a resumed run keeps its full history and wall time.
"""

from __future__ import annotations

import json
import math
import os
import resource
import shutil
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.trainer.states import TrainerFn

METRICS_FILE = "metrics.json"
IMAGE_CONFMATS_FILE = "val_image_confmats.npz"


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory of this process in MiB: CUDA allocator peak on GPU, max RSS on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class Checkpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose ``last.ckpt`` is refreshed after every validation.

    Lightning 2.6 rewrites ``last.ckpt`` at the end of validation only when a top-k
    checkpoint was written in the same step, so after an epoch without improvement
    ``last.ckpt`` is stale and a resumed run would redo finished epochs. seglit's recipes
    resume from ``last.ckpt``: it must always be the latest state. When a best checkpoint
    of the same step was just written, ``last.ckpt`` is a hard link to it rather than a
    second serialisation of the same state.
    """

    _last_written_step: int = -1

    def _save_last_checkpoint(self, trainer: L.Trainer, monitor_candidates: dict[str, Any]) -> None:
        if not self.save_last:
            return
        filepath = self.format_checkpoint_name(monitor_candidates, self.CHECKPOINT_NAME_LAST)
        just_saved = self._last_checkpoint_saved
        local = "://" not in filepath
        if local and trainer.is_global_zero and os.path.lexists(filepath):
            os.remove(filepath)  # never write through a hard link into a best-*.ckpt
        if (
            local
            and self.save_last is True
            and self._last_global_step_saved == trainer.global_step
            and just_saved
            and just_saved != filepath
        ):
            # A checkpoint of this very step was just written: link to it instead of
            # serialising the same state twice (a hard link survives top-k rotation).
            if trainer.is_global_zero:
                _link_or_copy(just_saved, filepath)
            trainer.strategy.barrier()
            self.last_model_path = filepath
        else:
            super()._save_last_checkpoint(trainer, monitor_candidates)
        self._last_written_step = trainer.global_step

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:  # noqa: D102
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._refresh_last(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:  # noqa: D102
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._refresh_last(trainer)

    def _refresh_last(self, trainer: L.Trainer) -> None:
        """Write ``last.ckpt`` if the parent class skipped it at this step."""
        if (
            self.save_last
            and trainer.state.fn == TrainerFn.FITTING
            and not trainer.sanity_checking
            and not trainer.fast_dev_run
            and self._last_written_step != trainer.global_step
        ):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


def _link_or_copy(source: str, target: str) -> None:
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


class TrainSpeedMonitor(Callback):
    """Logs ``train/images_per_sec`` (per process) and ``train/peak_mem_mb`` every epoch.

    Throughput is the epoch's training images divided by the wall time from the start of
    its first training batch to the end of its last one (data loading included, validation
    excluded). The device is synchronised only at those two points, never per step, so the
    measurement adds nothing to a GPU's training hot path.
    """

    def __init__(self) -> None:
        self._start: float | None = None
        self._images = 0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:  # noqa: D102
        self._start, self._images = None, 0

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:  # noqa: D102
        if self._start is None:
            _synchronize(pl_module.device)
            self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: D102
        self._images += int(batch["image"].shape[0])
        if batch_idx + 1 == trainer.num_training_batches and self._start is not None:
            _synchronize(pl_module.device)
            seconds = time.perf_counter() - self._start
            if seconds > 0:
                pl_module.log("train/images_per_sec", self._images / seconds, sync_dist=True)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:  # noqa: D102
        pl_module.log(
            "train/peak_mem_mb", peak_memory_mb(pl_module.device), reduce_fx="max", sync_dist=True
        )


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class RunSummaryWriter(Callback):
    """Records every validation epoch and writes ``metrics.json`` when ``fit`` ends.

    ``metrics.json`` holds ``status`` ("finished"), the best epoch (by val mIoU) with its
    metrics and per-class IoU, the validation history, parameter count, wall time,
    throughput and peak memory. The best epoch's per-image confusion matrices go to
    ``val_image_confmats.npz`` (used for paired bootstrap confidence intervals).

    Args:
        dirpath: Where to write the files; ``None`` uses ``trainer.log_dir`` (or
            ``trainer.default_root_dir``).
    """

    def __init__(self, dirpath: str | None = None) -> None:
        self.dirpath = dirpath
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None
        self.best_image_confmats: dict[str, Any] | None = None
        self.elapsed_before = 0.0
        self._fit_start = time.perf_counter()

    def output_dir(self, trainer: L.Trainer) -> Path:
        """Directory that receives ``metrics.json``."""
        return Path(self.dirpath or trainer.log_dir or trainer.default_root_dir)

    def elapsed(self) -> float:
        """Wall-clock seconds of fitting so far, including runs before a resume."""
        return self.elapsed_before + time.perf_counter() - self._fit_start

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:  # noqa: D102
        self._fit_start = time.perf_counter()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:  # noqa: D102
        result = getattr(pl_module, "last_eval", None)
        if trainer.sanity_checking or not result or result.get("stage") != "val":
            return
        if trainer.state.fn == TrainerFn.VALIDATING:
            self._write_eval(trainer, result, "validate")
            return
        entry = {"epoch": result["epoch"], "step": result["step"], **result["metrics"]}
        entry["IoU"] = {k: _finite_or_none(v) for k, v in result["IoU"].items()}
        entry["confmat"] = result["confmat"].tolist()
        self.history = [h for h in self.history if h["step"] != entry["step"]] + [entry]
        if self.best is None or entry["mIoU"] > self.best["mIoU"]:
            self.best = entry
            self.best_image_confmats = {
                "names": list(result["image_names"]),
                "confmats": result["image_confmats"].clone(),  # a tensor: checkpoint-safe
            }

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:  # noqa: D102
        result = getattr(pl_module, "last_eval", None)
        if result and result.get("stage") == "test":
            self._write_eval(trainer, result, "test")

    def _write_eval(self, trainer: L.Trainer, result: dict[str, Any], name: str) -> None:
        """Write ``validate_metrics.json`` / ``test_metrics.json`` for a standalone evaluation."""
        if not trainer.is_global_zero:
            return
        payload = {
            **result["metrics"],
            "IoU": {k: _finite_or_none(v) for k, v in result["IoU"].items()},
            "confmat": result["confmat"].tolist(),
            "num_images": len(result["image_names"]),
            "image_names": list(result["image_names"]),
        }
        out = self.output_dir(trainer)
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{name}_metrics.json").write_text(json.dumps(payload, indent=2))

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:  # noqa: D102
        if not trainer.is_global_zero:
            return
        metrics = trainer.callback_metrics
        summary = {
            "status": "finished",
            "best": self.best,
            "history": self.history,
            "epochs": trainer.current_epoch,
            "steps": trainer.global_step,
            "params": sum(p.numel() for p in _net(pl_module).parameters()),
            "gflops": _gflops(trainer, pl_module),
            "wall_time_s": round(self.elapsed(), 3),
            "train_images_per_sec": _metric(metrics, "train/images_per_sec"),
            "peak_mem_mb": _metric(metrics, "train/peak_mem_mb"),
        }
        out = self.output_dir(trainer)
        out.mkdir(parents=True, exist_ok=True)
        if self.best_image_confmats is not None:
            np.savez_compressed(
                out / IMAGE_CONFMATS_FILE,
                names=np.array(self.best_image_confmats["names"]),
                confmats=self.best_image_confmats["confmats"].numpy(),
            )
        tmp = out / (METRICS_FILE + ".tmp")
        tmp.write_text(json.dumps(summary, indent=2))
        tmp.replace(out / METRICS_FILE)

    def state_dict(self) -> dict[str, Any]:  # noqa: D102
        return {
            "history": self.history,
            "best": self.best,
            "best_image_confmats": self.best_image_confmats,
            "elapsed_before": self.elapsed(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:  # noqa: D102
        self.history = state_dict["history"]
        self.best = state_dict["best"]
        self.best_image_confmats = state_dict["best_image_confmats"]
        self.elapsed_before = state_dict["elapsed_before"]
        self._fit_start = time.perf_counter()


def _net(pl_module: L.LightningModule) -> torch.nn.Module:
    return getattr(pl_module, "net", pl_module)


def _gflops(trainer: L.Trainer, pl_module: L.LightningModule) -> float | None:
    """GFLOPs of one forward pass of the net at the training crop size (1 image)."""
    from seglit.models import describe_model

    crop = getattr(trainer.datamodule, "crop_size", None) if trainer.datamodule else None
    if crop is None:
        return None
    try:
        return round(describe_model(_net(pl_module), input_size=tuple(crop))["gflops"], 3)
    except Exception:  # a custom net the FLOP counter cannot trace: leave it out
        return None


def _metric(metrics: dict[str, Any], key: str) -> float | None:
    value = metrics.get(key)
    return None if value is None else float(value)


def _finite_or_none(value: float) -> float | None:
    return None if math.isnan(value) else value
