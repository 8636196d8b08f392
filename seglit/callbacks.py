"""Lightning callbacks that seglit adds to every run.

* :class:`TrainSpeedMonitor` logs training throughput (images/s) and peak memory.
* :class:`RunSummaryWriter` keeps the validation history and writes ``metrics.json``
  (and the best epoch's per-image confusion matrices) when ``fit`` ends, and
  ``validate_metrics.json`` / ``test_metrics.json`` after ``seglit validate`` / ``test``.
  Its state is saved in checkpoints, so a resumed run keeps its full history, wall time,
  throughput and peak memory.
* :class:`ProgressReporter` writes ``progress.json`` for the recipe runner's live line.
* :class:`PredictionWriter` writes the palette masks, overlays and panels of
  ``seglit predict`` (the pictures come from :mod:`seglit.visualize`).

The best and ``last.ckpt`` checkpoints are in :mod:`seglit.checkpoints`; the file names
and ``metrics.json``'s format in :mod:`seglit.run_folder`.
"""

from __future__ import annotations

import math
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter, Callback
from lightning.pytorch.trainer.states import TrainerFn
from PIL import Image

from seglit.evaluation import EvalResult
from seglit.io import atomic_file, finite, write_json
from seglit.run_folder import (
    CHECKPOINT_DIR,
    FINISHED,
    IMAGE_CONFMATS_FILE,
    METRICS_FILE,
    PROGRESS_ENV,
    RunMetrics,
    eval_metrics_file,
    failure_record,
    write_metrics,
    write_metrics_backup,
)
from seglit.visualize import comparison_panel, denormalize, write_prediction_files


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory of this process in MiB: CUDA allocator peak on GPU, max RSS on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


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

    ``metrics.json`` holds ``status`` ("finished"), the run's ``fingerprint``, the best epoch
    (by val mIoU) with its metrics and per-class IoU, the validation history, parameter
    count, wall time, throughput and peak memory. The best epoch's per-image confusion
    matrices go to ``val_image_confmats.npz`` (for the summary's confidence intervals).

    Args:
        dirpath: Where to write the files; ``None`` uses ``trainer.log_dir`` (or
            ``trainer.default_root_dir``).
    """

    def __init__(self, dirpath: str | None = None) -> None:
        self.dirpath = dirpath
        self.fingerprint: str | None = None
        """Set by the seglit CLI: the digest of the run's resolved config."""
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None
        self.best_image_confmats: dict[str, Any] | None = None
        self.measured: dict[str, float | None] = {}
        self.elapsed_before = 0.0
        self._fit_start = time.perf_counter()
        self.problem: str | None = None
        """Why ``fit`` ended without a result (no validation ran), else ``None``."""
        self._batches_this_fit = 0

    def output_dir(self, trainer: L.Trainer) -> Path:
        """Directory that receives ``metrics.json``."""
        return Path(self.dirpath or trainer.log_dir or trainer.default_root_dir)

    def elapsed(self) -> float:
        """Wall-clock seconds of fitting so far, including runs before a resume."""
        return self.elapsed_before + time.perf_counter() - self._fit_start

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:  # noqa: D102
        self._fit_start = time.perf_counter()
        self._batches_this_fit = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: D102
        self._batches_this_fit += 1

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:  # noqa: D102
        # Kept in the state (and so in checkpoints): a resume that has nothing left to train
        # still reports what the run measured.
        for key, name in (
            ("train_images_per_sec", "train/images_per_sec"),
            ("peak_mem_mb", "train/peak_mem_mb"),
        ):
            value = trainer.callback_metrics.get(name)
            if value is not None:
                self.measured[key] = float(value)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:  # noqa: D102
        result: EvalResult | None = getattr(pl_module, "last_eval", None)
        if trainer.sanity_checking or result is None or result.stage != "val":
            return
        if trainer.state.fn == TrainerFn.VALIDATING:
            self._write_eval(trainer, result, "validate")
            return
        if result.step != trainer.global_step:
            return  # not this validation's result
        entry = finite(result.record())
        self.history = [h for h in self.history if h["step"] != entry["step"]] + [entry]
        if self.best is None or _score(entry) > _score(self.best):
            self.best = entry
            self.best_image_confmats = {
                "names": list(result.image_names),
                "confmats": torch.as_tensor(result.image_confmats).clone(),  # checkpoint-safe
            }

    def on_test_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:  # noqa: D102
        result: EvalResult | None = getattr(pl_module, "last_eval", None)
        if result is not None and result.stage == "test":
            self._write_eval(trainer, result, "test")
            if trainer.is_global_zero:
                print(f"seglit: test {scored_split(trainer, len(result.image_names))}")

    def _write_eval(self, trainer: L.Trainer, result: EvalResult, name: str) -> None:
        """Write ``validate_metrics.json`` / ``test_metrics.json`` for a standalone evaluation."""
        if not trainer.is_global_zero:
            return
        payload = {
            **finite(result.record()),
            "split": _dataset_split(trainer, result.stage),
            "fingerprint": self.fingerprint,
            "num_images": len(result.image_names),
            "image_names": list(result.image_names),
        }
        write_json(self.output_dir(trainer) / eval_metrics_file(name), payload)

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:  # noqa: D102
        if self.best is None:  # never recorded as finished: there is no result to report
            self.problem = (
                f"the run ended after {trainer.current_epoch} epoch(s) without a validation, so "
                "it has no best epoch and no result (trainer.max_epochs="
                f"{trainer.max_epochs}, trainer.check_val_every_n_epoch="
                f"{trainer.check_val_every_n_epoch}, trainer.max_steps={trainer.max_steps}); "
                "make it validate at least once"
            )
            if trainer.is_global_zero:
                write_metrics(
                    self.output_dir(trainer),
                    failure_record(self.fingerprint, 1, self.problem, []),
                )
            return
        if not trainer.is_global_zero:
            return
        summary = RunMetrics(
            status=FINISHED,
            fingerprint=self.fingerprint,
            best=self.best,
            history=self.history,
            epochs=trainer.current_epoch,
            steps=trainer.global_step,
            params=sum(p.numel() for p in _net(pl_module).parameters()),
            gflops=_gflops(trainer, pl_module),
            wall_time_s=round(self.elapsed(), 3),
            train_images_per_sec=self.measured.get("train_images_per_sec"),
            peak_mem_mb=self.measured.get("peak_mem_mb"),
        )
        if trainer.ckpt_path and self._batches_this_fit == 0:
            # Nothing trained: the record is rebuilt from the checkpoint (its metrics files
            # were lost). What only the original process measured is not presented as known.
            summary.train_images_per_sec = summary.peak_mem_mb = None
            summary.wall_time_s = round(self.elapsed_before, 3)  # as of the checkpoint
            summary.restored = {
                "from_checkpoint": Path(trainer.ckpt_path).name,
                "unknown": ["train_images_per_sec", "peak_mem_mb"],
            }
            print(
                f"seglit: the run's record is rebuilt from {Path(trainer.ckpt_path).name} "
                "(nothing more to train); its throughput and peak memory are unknown",
                file=sys.stderr,
            )
        out = self.output_dir(trainer)
        if self.best_image_confmats is not None:
            with atomic_file(out / IMAGE_CONFMATS_FILE, "wb") as handle:
                np.savez_compressed(
                    handle,
                    names=np.array(self.best_image_confmats["names"]),
                    confmats=self.best_image_confmats["confmats"].numpy(),
                )
        write_metrics_backup(out, summary)  # the copy a damaged metrics.json is restored from
        write_metrics(out, summary)  # last: its presence means the run finished
        best = self.best
        miou = best.get("mIoU")  # None: no pixel of the split was scored
        miou_text = "undefined" if miou is None or math.isnan(miou) else f"{miou:.4f}"
        print(
            f"seglit: fit finished: best val mIoU {miou_text} at epoch "
            f"{best.get('epoch')}; results in {out} ({METRICS_FILE}, {CHECKPOINT_DIR}/)"
        )

    def state_dict(self) -> dict[str, Any]:  # noqa: D102
        return {
            "history": self.history,
            "best": self.best,
            "best_image_confmats": self.best_image_confmats,
            "measured": self.measured,
            "elapsed_before": self.elapsed(),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:  # noqa: D102
        self.history = state_dict["history"]
        self.best = state_dict["best"]
        self.best_image_confmats = state_dict["best_image_confmats"]
        self.measured = state_dict.get("measured", {})
        self.elapsed_before = state_dict["elapsed_before"]
        self._fit_start = time.perf_counter()


def _dataset_split(trainer: L.Trainer, stage: str) -> str | None:
    """The split name of the dataset a stage ran on (``None`` if the dataset has none)."""
    datamodule = getattr(trainer, "datamodule", None)
    dataset = getattr(datamodule, f"{stage}_dataset", None)
    return getattr(dataset, "split", None)


def scored_split(trainer: L.Trainer, num_images: int) -> str:
    """``scored the 'val' split of SyntheticVOCDataModule (5 images), the validation images``:
    which images ``seglit test`` scored, said plainly (a dataset without public test labels
    tests on its validation split)."""
    split = _dataset_split(trainer, "test")
    name = type(getattr(trainer, "datamodule", None)).__name__
    what = f"the {split!r} split" if split else "the test dataset"
    val_split = (getattr(trainer.datamodule, "splits", None) or {}).get("val", "val")
    same = split is not None and split == val_split
    note = ", the validation images (no separate test split is used)" if same else ""
    return f"scored {what} of {name} ({num_images} images){note}"


class ProgressReporter(Callback):
    """Writes ``progress.json`` for the recipe runner's live console line.

    Inert unless the environment variable ``SEGLIT_PROGRESS_FILE`` names the file (the
    runner sets it for the variants it starts). Global rank zero only; at most one write
    per ``interval_s`` during training, and one after every validation.

    Args:
        interval_s: Seconds between two writes during training.
    """

    def __init__(self, interval_s: float = 1.0) -> None:
        self.path = os.environ.get(PROGRESS_ENV)
        self.interval_s = interval_s
        self._last_write = 0.0
        self._start = time.perf_counter()
        self._val_miou: float | None = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:  # noqa: D102
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:  # noqa: D102
        if time.perf_counter() - self._last_write >= self.interval_s:
            self._write(trainer)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:  # noqa: D102
        result: EvalResult | None = getattr(pl_module, "last_eval", None)
        if not trainer.sanity_checking and result is not None and result.stage == "val":
            self._val_miou = result.metrics.get("mIoU")
        self._write(trainer)

    def _write(self, trainer: L.Trainer) -> None:
        if self.path is None or not trainer.is_global_zero:
            return
        self._last_write = time.perf_counter()
        loss = trainer.callback_metrics.get("train/loss_step")
        total = trainer.estimated_stepping_batches
        write_json(
            self.path,
            {
                "epoch": trainer.current_epoch,
                "max_epochs": trainer.max_epochs,
                "step": trainer.global_step,
                "total_steps": None if math.isinf(total) else int(total),
                "loss": None if loss is None else float(loss),
                "val_mIoU": self._val_miou,
                "elapsed_s": round(self._last_write - self._start, 1),
            },
        )


def _net(pl_module: L.LightningModule) -> torch.nn.Module:
    return getattr(pl_module, "net", pl_module)


def _gflops(trainer: L.Trainer, pl_module: L.LightningModule) -> float | None:
    """GFLOPs of one forward pass of the net at the training crop size (1 image)."""
    from seglit.models.card import count_gflops

    crop = getattr(trainer.datamodule, "crop_size", None) if trainer.datamodule else None
    if crop is None:
        return None
    try:
        return round(count_gflops(_net(pl_module), input_size=tuple(crop)), 3)
    except Exception:  # a custom net the FLOP counter cannot trace: leave it out
        return None


def _score(entry: dict[str, Any]) -> float:
    """An entry's mIoU for ranking (an undefined mIoU ranks last)."""
    return -math.inf if entry.get("mIoU") is None else entry["mIoU"]


class PredictionWriter(BasePredictionWriter):
    """Writes, for every prediction, ``<name>.png``, ``<name>_overlay.png`` and maybe a panel.

    The mask and the overlay are written by :func:`seglit.visualize.write_prediction_files`,
    the same writer as ``python -m seglit.predict``'s folder mode (same files, same format):

    * ``<name>.png``: the label map as a palette PNG (pixel value = class index, VOC style);
    * ``<name>_overlay.png``: the image with the predicted non-background classes tinted
      (background and void untouched, class boundaries outlined) and, below it, a legend of
      the classes present;
    * ``<name>_panel.png``, only when the batch carries ground-truth masks (``"mask"``):
      image | ground truth | prediction | errors (see :func:`seglit.visualize.comparison_panel`).

    Args:
        output_dir: Destination folder; ``None`` uses ``<default_root_dir>/predictions``.
        overlay_alpha: Opacity of the class colours in the overlays and panels (0 disables
            both).
    """

    def __init__(self, output_dir: str | None = None, overlay_alpha: float = 0.5) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = output_dir
        self.overlay_alpha = overlay_alpha

    def _dir(self, trainer: L.Trainer) -> Path:
        path = Path(self.output_dir or Path(trainer.default_root_dir) / "predictions")
        path.mkdir(parents=True, exist_ok=True)
        return path

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Say where the predictions went."""
        if trainer.is_global_zero:
            print(f"seglit predict: predictions written to {self._dir(trainer)}")

    def write_on_batch_end(  # noqa: D102
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        prediction: dict[str, Any],
        batch_indices: Any,
        batch: dict[str, Any],
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        datamodule = trainer.datamodule
        palette = list(datamodule.palette)
        class_names = list(datamodule.class_names)
        out = self._dir(trainer)
        preds = prediction["pred"].numpy()
        sizes = prediction.get("size") or [p.shape for p in preds]
        masks = batch.get("mask")
        for i, name in enumerate(prediction["name"]):
            height, width = (int(v) for v in sizes[i])
            label_map = preds[i, :height, :width]
            stem = Path(str(name)).stem
            rgb = denormalize(
                batch["image"][i, :, :height, :width], datamodule.mean, datamodule.std
            )
            write_prediction_files(
                out, stem, rgb, label_map, palette, class_names, self.overlay_alpha
            )
            if self.overlay_alpha <= 0:
                continue
            if masks is not None:
                target = masks[i, :height, :width].cpu().numpy()
                panel = comparison_panel(
                    rgb, target, label_map, palette, class_names, self.overlay_alpha
                )
                with atomic_file(out / f"{stem}_panel.png", "wb") as handle:
                    Image.fromarray(panel).save(handle, format="PNG")
