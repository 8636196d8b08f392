"""W&B media of a training run: per-class IoU tables, confusion matrices, sample masks.

:class:`WandbMedia` is a Lightning callback. After every ``log_every_n_epochs``-th
validation epoch it logs, to the trainer's W&B logger:

- ``val/per_class_iou``: a table ``(class, IoU)``;
- ``val/confusion_matrix``: W&B's confusion-matrix chart, built from the accumulated
  dataset-level matrix (``SegmentationModule.last_eval.confmat``), not from pixels;
- ``val/samples``: the first ``num_samples`` validation images as ``wandb.Image`` with
  interactive ``prediction`` and ``ground_truth`` masks (void pixels labelled ``void``);
- ``val/panels``: the same images as image | ground truth | prediction | errors panels.

A W&B failure never stops training: it becomes one warning and the media logging stops.
The recipe's summary run is :mod:`seglit.wandb.summary`'s job.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import WandbLogger as LightningWandbLogger
from torch import Tensor

from seglit import IGNORE_INDEX
from seglit.evaluation import EvalResult, batch_image_names
from seglit.io import finite
from seglit.visualize import comparison_panel, denormalize

VOID_LABEL = "void"
CONFUSION_SPEC = "wandb/confusion_matrix/v1"


# --------------------------------------------------------------------------- building blocks
def class_labels(class_names: Sequence[str], ignore_index: int = IGNORE_INDEX) -> dict[int, str]:
    """``{class index: name}`` plus the void label, as W&B masks want them."""
    labels = {i: str(name) for i, name in enumerate(class_names)}
    labels[int(ignore_index)] = VOID_LABEL
    return labels


def iou_table(iou: Mapping[str, float]):
    """A ``wandb.Table`` with one row ``(class, IoU)`` per class (``None`` if undefined)."""
    import wandb

    rows = [[name, finite(value)] for name, value in iou.items()]
    return wandb.Table(columns=["class", "IoU"], data=rows)


def confusion_matrix_chart(confmat: Tensor | np.ndarray, class_names: Sequence[str], title: str):
    """W&B's confusion-matrix chart from an accumulated ``(C, C)`` matrix (rows = actual).

    ``wandb.plot.confusion_matrix`` only takes per-sample labels, which for segmentation
    would mean one entry per pixel; this builds the same table (``Actual``, ``Predicted``,
    ``nPredictions``) from the matrix and renders it with the same Vega spec.
    """
    import wandb

    matrix = np.asarray(confmat.cpu() if isinstance(confmat, Tensor) else confmat)
    c = len(class_names)
    if matrix.shape != (c, c):
        raise ValueError(f"confusion matrix has shape {matrix.shape}, expected ({c}, {c})")
    data = [
        [str(class_names[i]), str(class_names[j]), int(matrix[i, j])]
        for i in range(c)
        for j in range(c)
    ]
    table = wandb.Table(columns=["Actual", "Predicted", "nPredictions"], data=data)
    fields = {"Actual": "Actual", "Predicted": "Predicted", "nPredictions": "nPredictions"}
    return wandb.plot_table(CONFUSION_SPEC, table, fields, {"title": title})


def mask_image(
    image: np.ndarray,
    prediction: np.ndarray,
    target: np.ndarray | None,
    labels: Mapping[int, str],
    caption: str | None = None,
):
    """A ``wandb.Image`` of an RGB image with ``prediction`` and ``ground_truth`` masks."""
    import wandb

    masks = {"prediction": {"mask_data": prediction.astype(np.uint8), "class_labels": dict(labels)}}
    if target is not None:
        masks["ground_truth"] = {"mask_data": target.astype(np.uint8), "class_labels": dict(labels)}
    return wandb.Image(image, masks=masks, caption=caption)


def find_wandb_logger(trainer: L.Trainer) -> LightningWandbLogger | None:
    """The trainer's W&B logger (seglit's or Lightning's), or ``None``.

    A seglit logger that is disabled or already broken counts as none.
    """
    for logger in trainer.loggers:
        if isinstance(logger, LightningWandbLogger):
            return logger if getattr(logger, "active", True) else None
    return None


# --------------------------------------------------------------------------------- callback
class WandbMedia(Callback):
    """Logs per-class IoU, the confusion matrix and sample masks to W&B.

    Runs on global rank zero only, after validation epochs where
    ``(epoch + 1) % log_every_n_epochs == 0`` (never during the sanity check), and only
    when the trainer has a W&B logger. It reads the metrics the
    :class:`~seglit.module.SegmentationModule` stores in ``last_eval``; the sample
    predictions are recomputed with ``pl_module.predict_logits`` for those few images only.

    Args:
        log_every_n_epochs: Log after every n-th epoch's validation.
        num_samples: Number of validation images (the first ones of the val loader, so the
            same images every time) logged with their masks; 0 logs none.
    """

    def __init__(self, log_every_n_epochs: int = 1, num_samples: int = 4) -> None:
        if log_every_n_epochs < 1:
            raise ValueError(f"log_every_n_epochs must be >= 1, got {log_every_n_epochs}")
        if num_samples < 0:
            raise ValueError(f"num_samples must be >= 0, got {num_samples}")
        self.log_every_n_epochs = log_every_n_epochs
        self.num_samples = num_samples
        self._samples: list[dict[str, Any]] = []
        self._failed = False

    def _active(self, trainer: L.Trainer) -> bool:
        return (
            not self._failed
            and not trainer.sanity_checking
            and trainer.is_global_zero
            and (trainer.current_epoch + 1) % self.log_every_n_epochs == 0
            and find_wandb_logger(trainer) is not None
        )

    def _fail(self, err: Exception) -> None:
        self._failed = True
        self._samples = []
        warnings.warn(
            f"W&B media logging failed ({type(err).__name__}: {err}); training continues "
            "without per-class tables, confusion matrices and sample masks.",
            stacklevel=2,
        )

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:  # noqa: D102
        self._samples = []
        logger = find_wandb_logger(trainer)
        if logger is not None and hasattr(logger, "eval_step"):
            logger.eval_step = None  # set again when this validation's scalars are logged

    def on_validation_batch_end(  # noqa: D102
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if len(self._samples) >= self.num_samples or not self._active(trainer):
            return
        try:
            self._collect(trainer, pl_module, batch)
        except Exception as err:
            self._fail(err)

    def _collect(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: dict[str, Any]
    ) -> None:
        from seglit.module import resize_logits, split_output

        k = self.num_samples - len(self._samples)
        images = batch["image"][:k]
        masks = batch.get("mask")
        masks = masks[:k] if masks is not None else None
        with torch.no_grad():
            if hasattr(pl_module, "predict_logits"):
                logits = pl_module.predict_logits(images)
            else:
                logits = split_output(pl_module(images))[0]
            if masks is not None:
                logits = resize_logits(logits, masks.shape[-2:])
            preds = logits.argmax(1).cpu().numpy()
        datamodule = getattr(trainer, "datamodule", None)
        rgb = denormalize(
            images, getattr(datamodule, "mean", None), getattr(datamodule, "std", None)
        )
        names = batch_image_names(batch) or []
        for i in range(len(preds)):
            self._samples.append(
                {
                    "image": rgb[i],
                    "pred": preds[i],
                    "mask": masks[i].cpu().numpy() if masks is not None else None,
                    "name": str(names[i]) if i < len(names) else f"sample {len(self._samples)}",
                }
            )

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:  # noqa: D102
        result: EvalResult | None = getattr(pl_module, "last_eval", None)
        fresh = result is not None and result.stage == "val"
        fresh = fresh and result.step == trainer.global_step
        if not fresh or not self._active(trainer):  # no new validation result to log
            self._samples = []
            return
        try:
            logger = find_wandb_logger(trainer)
            payload = self.build_payload(pl_module, result)
            # the step of this validation's scalars (seglit's logger records it), so a
            # dashboard shows media and metrics of one validation at one step
            step = getattr(logger, "eval_step", None)
            payload["trainer/global_step"] = result.step if step is None else step
            logger.experiment.log(payload)
        except Exception as err:
            self._fail(err)
        self._samples = []

    def build_payload(self, pl_module: L.LightningModule, result: EvalResult) -> dict[str, Any]:
        """The W&B log dict for one validation epoch (tables, chart and sample images)."""
        import wandb

        stage = result.stage
        names = list(getattr(pl_module, "class_names", None) or result.iou.keys())
        payload: dict[str, Any] = {
            f"{stage}/per_class_iou": iou_table(result.iou),
            f"{stage}/confusion_matrix": confusion_matrix_chart(
                result.confmat, names, f"{stage} confusion matrix (epoch {result.epoch})"
            ),
        }
        if self._samples:
            ignore = int(getattr(pl_module, "ignore_index", IGNORE_INDEX))
            labels = class_labels(names, ignore)
            payload[f"{stage}/samples"] = [
                mask_image(s["image"], s["pred"], s["mask"], labels, caption=s["name"])
                for s in pad_samples(self._samples, ignore)
            ]
            palette = self._palette(pl_module, len(names))
            panels = [
                (comparison_panel(s["image"], s["mask"], s["pred"], palette, names), s["name"])
                for s in self._samples
                if s["mask"] is not None
            ]
            payload[f"{stage}/panels"] = [
                wandb.Image(panel, caption=name) for panel, name in _pad_images(panels)
            ]
        return payload

    @staticmethod
    def _palette(pl_module: L.LightningModule, num_classes: int) -> list[tuple[int, int, int]]:
        datamodule = getattr(getattr(pl_module, "trainer", None), "datamodule", None)
        palette = getattr(datamodule, "palette", None)
        if palette is None:
            from seglit.data.palette import voc_palette

            palette = voc_palette(num_classes)
        return list(palette)


def _pad_images(images: list[tuple[np.ndarray, str]]) -> list[tuple[np.ndarray, str]]:
    """Pad RGB images (white) at the bottom/right to one size: a W&B gallery needs it."""
    if not images:
        return []
    height = max(image.shape[0] for image, _ in images)
    width = max(image.shape[1] for image, _ in images)
    pad = [
        (
            np.pad(
                im,
                ((0, height - im.shape[0]), (0, width - im.shape[1]), (0, 0)),
                constant_values=255,
            ),
            n,
        )
        for im, n in images
    ]
    return pad


def pad_samples(
    samples: list[dict[str, Any]], ignore_index: int = IGNORE_INDEX
) -> list[dict[str, Any]]:
    """Pad sample images (black) and masks (void) at the bottom/right to one common size.

    W&B shows the images of one key as a gallery and expects them to have the same size.
    """
    height = max(s["image"].shape[0] for s in samples)
    width = max(s["image"].shape[1] for s in samples)
    out = []
    for s in samples:
        h, w = s["image"].shape[:2]
        pad = ((0, height - h), (0, width - w))
        padded = dict(s)
        padded["image"] = np.pad(s["image"], pad + ((0, 0),))
        padded["pred"] = np.pad(s["pred"], pad, constant_values=ignore_index)
        if s["mask"] is not None:
            padded["mask"] = np.pad(s["mask"], pad, constant_values=ignore_index)
        out.append(padded)
    return out
