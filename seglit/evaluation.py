"""Per-image evaluation records, gathered over processes so every image counts exactly once.

Validation and test score each image into an :class:`ImageRecord` (its confusion matrix,
loss sum and checkerboard score). At the epoch's end every process gathers every record
(:func:`gather_unique_records`) and keeps one per image name: a sampler that pads the
dataset by repeating images (Lightning's default ``DistributedSampler`` under DDP) cannot
count an image twice, whatever the Trainer's settings. The dataset-level metrics are then
computed from the unique records (:func:`eval_result`), identically on every process, into
an :class:`EvalResult`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import Tensor

from seglit.metrics import metrics_from_confmat

SCALARS = ("mIoU", "acc", "mAcc", "fwIoU")


@dataclass
class EvalResult:
    """The result of one validation or test epoch, as the LightningModule computed it.

    Attributes:
        stage: ``"val"`` or ``"test"``.
        epoch: Training epoch it belongs to.
        step: Global step it belongs to.
        metrics: Scalars: ``mIoU``, ``acc``, ``mAcc``, ``fwIoU``; with the dense CRF also
            ``mIoU_before_crf`` (and the other scalars ``*_before_crf``); with the
            checkerboard measurement ``checkerboard``.
        iou: Per-class IoU (NaN where a class never occurs).
        confmat: The dataset-level confusion matrix ``(C, C)`` (rows: ground truth).
        image_names: The scored images, sorted, each exactly once.
        image_confmats: Their confusion matrices ``(n, C, C)``, in ``image_names`` order.
    """

    stage: Literal["val", "test"]
    epoch: int
    step: int
    metrics: dict[str, float]
    iou: dict[str, float]
    confmat: Any
    image_names: list[str] = field(default_factory=list)
    image_confmats: Any = None

    def record(self) -> dict[str, Any]:
        """The JSON-ready record of this result (an entry of ``metrics.json``'s history)."""
        confmat = self.confmat.tolist() if hasattr(self.confmat, "tolist") else self.confmat
        return {
            "epoch": self.epoch,
            "step": self.step,
            **self.metrics,
            "IoU": dict(self.iou),
            "confmat": confmat,
        }


class DuplicateImageError(RuntimeError):
    """Two records of one image name disagree: names do not identify the images."""


@dataclass
class ImageRecord:
    """What scoring one image produced.

    Attributes:
        name: The image's id (unique within the split).
        confmat: ``(C, C)`` int64 confusion counts (rows: ground truth).
        loss_sum: Summed (class-weighted) cross-entropy over its labelled pixels.
        loss_weight: The matching weight (number of labelled pixels without class weights).
        confmat_before_crf: The counts before the dense CRF, when the CRF is on.
        checkerboard: Its checkerboard score (NaN when not measured).
        checkerboard_logits: The same score of the log-probabilities (the logits up to a
            per-pixel constant), where an artifact that saturated probabilities hide still
            shows (NaN when not measured).
    """

    name: str
    confmat: Tensor
    loss_sum: float
    loss_weight: float
    confmat_before_crf: Tensor | None = None
    checkerboard: float = math.nan
    checkerboard_logits: float = math.nan


def batch_image_names(batch: dict[str, Any]) -> list[str] | None:
    """A batch's image names as strings, ``None`` when it has none.

    A dataset's integer ids arrive collated into a tensor (whose truth value is ambiguous,
    and ``tensor(0)`` is false): each becomes its own name.
    """
    names = batch.get("name")
    if names is None:
        return None
    if isinstance(names, Tensor):
        names = names.tolist()
    return [str(name) for name in names]


def gather_unique_records(local: Sequence[ImageRecord]) -> list[ImageRecord]:
    """Every process's records, one per image name, sorted by name.

    Raises:
        DuplicateImageError: Two records share a name but not their confusion matrices.
    """
    records = list(local)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        parts: list = [None] * torch.distributed.get_world_size()
        torch.distributed.all_gather_object(parts, records)
        records = [record for part in parts for record in part]
    unique: dict[str, ImageRecord] = {}
    for record in records:
        seen = unique.setdefault(record.name, record)
        if seen is not record and not torch.equal(seen.confmat, record.confmat):
            raise DuplicateImageError(
                f"image {record.name!r} was scored twice with different results: image names "
                "must identify the images of a split (the datamodule's samples need unique "
                "'name' values)"
            )
    return [unique[name] for name in sorted(unique)]


def eval_result(
    records: Sequence[ImageRecord],
    stage: str,
    epoch: int,
    step: int,
    class_names: Sequence[str],
) -> EvalResult:
    """Dataset-level metrics of unique image records (one confusion matrix over all)."""
    confmats = torch.stack([r.confmat for r in records])
    result = metrics_from_confmat(confmats.sum(0))
    metrics = {key: float(result[key]) for key in SCALARS}
    if all(r.confmat_before_crf is not None for r in records):
        before = metrics_from_confmat(torch.stack([r.confmat_before_crf for r in records]).sum(0))
        metrics.update({f"{key}_before_crf": float(before[key]) for key in SCALARS})
    scores = [r.checkerboard for r in records if not math.isnan(r.checkerboard)]
    if scores:
        metrics["checkerboard"] = sum(scores) / len(scores)
    scores = [r.checkerboard_logits for r in records if not math.isnan(r.checkerboard_logits)]
    if scores:
        metrics["checkerboard_logits"] = sum(scores) / len(scores)
    return EvalResult(
        stage=stage,
        epoch=epoch,
        step=step,
        metrics=metrics,
        iou=dict(zip(class_names, result["IoU"].tolist())),
        confmat=result["confmat"].cpu().numpy(),
        image_names=[r.name for r in records],
        image_confmats=confmats.numpy(),
    )
