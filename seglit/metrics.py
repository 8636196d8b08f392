"""Dataset-level segmentation metrics from one int64 confusion matrix.

Published segmentation numbers (FCN, DeepLab, mmsegmentation, Cityscapes) accumulate a
single confusion matrix over the whole split and derive every metric from it at the end:
``IoU_c = TP_c / (TP_c + FP_c + FN_c)`` and mIoU is the mean over classes whose union is
non-empty. Pixels labelled ``ignore_index`` (255, the VOC void border) are dropped before
counting. Averaging per-image IoUs instead (torchmetrics ``segmentation.MeanIoU``, smp
"imagewise") gives a different, non-comparable number.

Counting is ``argmax`` plus one ``torch.bincount`` per batch. ``torch.bincount`` without
``weights`` is deterministic on CPU and CUDA (integer counts; it is not in the list of ops
``torch.use_deterministic_algorithms`` rejects), so ``Trainer(deterministic=True)`` costs
nothing here, unlike torchmetrics' classification metrics which fall back to a Python loop
over classes in deterministic mode.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor
from torchmetrics import Metric

from seglit.iou import class_iou

__all__ = [
    "SegmentationMetrics",
    "checkerboard_score",
    "confusion_matrix",
    "metrics_from_confmat",
    "per_image_confusion",
]


def _labels_and_valid(
    preds: Tensor, target: Tensor, num_classes: int, ignore_index: int | None
) -> tuple[Tensor, Tensor, Tensor]:
    """Check shapes/values and return (pred labels, int64 target, valid mask)."""
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if target.is_floating_point() or target.is_complex():
        raise ValueError(f"target must be an integer label map, got dtype {target.dtype}")
    if preds.is_floating_point():
        expected = f"(N={target.shape[0] if target.ndim else '?'}, C={num_classes}, *spatial)"
        if preds.ndim != target.ndim + 1 or target.ndim == 0:
            raise ValueError(
                f"logits must have shape {expected} for a target of shape "
                f"{tuple(target.shape)}, got {tuple(preds.shape)}"
            )
        if preds.shape[0] != target.shape[0] or preds.shape[1] != num_classes:
            raise ValueError(
                f"logits must have shape {expected}, got {tuple(preds.shape)} "
                "(batch size or number of classes differs)"
            )
        if preds.shape[2:] != target.shape[1:]:
            raise ValueError(
                f"logits have spatial size {tuple(preds.shape[2:])} but target has "
                f"{tuple(target.shape[1:])}: upsample the logits to the label's original "
                "resolution before scoring (labels are never resized)"
            )
        # Same indices as argmax (first maximum, NaN wins) but ~4x faster on CPU for NCHW:
        # argmax over a strided class dim is slow in torch, max(dim) is vectorised.
        labels = preds.max(dim=1).indices
    else:
        if preds.shape != target.shape:
            raise ValueError(
                f"label predictions must have the target's shape {tuple(target.shape)}, "
                f"got {tuple(preds.shape)}"
            )
        labels = preds.long()
        lo, hi = labels.aminmax() if labels.numel() else (0, 0)
        if lo < 0 or hi >= num_classes:
            values = torch.unique(labels[(labels < 0) | (labels >= num_classes)])[:10].tolist()
            raise ValueError(f"predicted labels contain values {values} outside [0, {num_classes})")
    target = target.long()
    if ignore_index is None:
        valid = torch.ones_like(target, dtype=torch.bool)
    else:
        valid = target != ignore_index
    # One min/max pass over the counted pixels; the error path then names the bad values.
    lo, hi = torch.where(valid, target, 0).aminmax() if target.numel() else (0, 0)
    if lo < 0 or hi >= num_classes:
        bad = valid & ((target < 0) | (target >= num_classes))
        values = torch.unique(target[bad])[:10].tolist()
        raise ValueError(
            f"target contains values {values} outside [0, {num_classes}) that are not "
            f"ignore_index={ignore_index}"
        )
    return labels, target, valid


def confusion_matrix(
    preds: Tensor, target: Tensor, num_classes: int, ignore_index: int | None = 255
) -> Tensor:
    """Confusion matrix of one batch.

    Args:
        preds: logits ``(N, C, H, W)`` (floating point; argmax over dim 1) or integer label
            maps ``(N, H, W)``.
        target: integer label maps ``(N, H, W)``; values in ``[0, C)`` or ``ignore_index``.
        num_classes: number of classes ``C``.
        ignore_index: target value whose pixels are dropped; ``None`` keeps every pixel.

    Returns:
        ``(C, C)`` int64 tensor on ``preds``' device; rows are target classes, columns are
        predicted classes.

    Raises:
        ValueError: on mismatched shapes (e.g. logits not upsampled to the label size) or
            target/label values outside ``[0, C)`` that are not ``ignore_index``.
    """
    labels, target, valid = _labels_and_valid(preds, target, num_classes, ignore_index)
    n_bins = num_classes * num_classes
    # Ignored pixels go to one extra bin that is cut off: no boolean-mask gather needed.
    index = torch.where(valid, target * num_classes + labels, n_bins)
    counts = torch.bincount(index.reshape(-1), minlength=n_bins + 1)
    return counts[:n_bins].reshape(num_classes, num_classes)


def per_image_confusion(
    preds: Tensor, target: Tensor, num_classes: int, ignore_index: int | None = 255
) -> Tensor:
    """One confusion matrix per image, from a single bincount.

    Args:
        preds: logits ``(N, C, H, W)`` or integer label maps ``(N, H, W)``.
        target: integer label maps ``(N, H, W)``.
        num_classes: number of classes ``C``.
        ignore_index: target value whose pixels are dropped; ``None`` keeps every pixel.

    Returns:
        ``(N, C, C)`` int64 tensor; ``result.sum(0) == confusion_matrix(preds, target, C)``.
    """
    labels, target, valid = _labels_and_valid(preds, target, num_classes, ignore_index)
    if target.ndim == 0:
        raise ValueError("target must have a batch dimension (N, H, W)")
    n = target.shape[0]
    n_bins = num_classes * num_classes
    image = torch.arange(n, device=target.device).view(n, *([1] * (target.ndim - 1)))
    index = torch.where(valid, image * n_bins + target * num_classes + labels, n * n_bins)
    counts = torch.bincount(index.reshape(-1), minlength=n * n_bins + 1)
    return counts[: n * n_bins].reshape(n, num_classes, num_classes)


def metrics_from_confmat(confmat: Tensor) -> dict[str, Tensor]:
    """Segmentation metrics from a confusion matrix (rows = target, cols = prediction).

    Args:
        confmat: ``(C, C)`` integer counts.

    Returns:
        Dict of float64 tensors:

        - ``"mIoU"``: mean of ``IoU`` over classes with a non-empty union (TP+FP+FN > 0).
        - ``"acc"``: pixel accuracy, ``trace / total``.
        - ``"mAcc"``: mean of ``TP_c / (TP_c + FN_c)`` over classes present in the target.
        - ``"fwIoU"``: ``sum_c freq_c * IoU_c`` with ``freq_c`` the class' share of target
          pixels (mmsegmentation/FCN definition).
        - ``"IoU"``: ``(C,)`` per-class IoU, NaN where the union is empty.
        - ``"confmat"``: the input matrix (int64).

        With no counted pixels at all every scalar is NaN (undefined, not 0).
    """
    if confmat.ndim != 2 or confmat.shape[0] != confmat.shape[1]:
        raise ValueError(f"confmat must be square (C, C), got shape {tuple(confmat.shape)}")
    cm = confmat.to(torch.float64)
    tp = cm.diagonal()
    gt = cm.sum(dim=1)  # TP + FN
    total = cm.sum()
    nan = torch.tensor(math.nan, dtype=torch.float64, device=cm.device)

    iou = class_iou(cm, torch)
    has_union = ~iou.isnan()  # counts are finite: NaN exactly where the union is empty
    miou = iou[has_union].mean() if bool(has_union.any()) else nan
    present = gt > 0
    macc = (tp[present] / gt[present]).mean() if bool(present.any()) else nan
    if total > 0:
        acc = tp.sum() / total
        fwiou = (gt[has_union] / total * iou[has_union]).sum()
    else:
        acc = fwiou = nan
    return {
        "mIoU": miou,
        "acc": acc,
        "mAcc": macc,
        "fwIoU": fwiou,
        "IoU": iou,
        "confmat": confmat.to(torch.int64),
    }


class SegmentationMetrics(Metric):
    """Dataset-level mIoU, pixel accuracy, mean class accuracy and fwIoU.

    Accumulates one int64 confusion matrix (state ``confmat``, summed across ranks) and
    derives all metrics in :meth:`compute` with :func:`metrics_from_confmat`.

    Args:
        num_classes: number of classes ``C``.
        ignore_index: target value dropped from every count (255 = VOC/Cityscapes void);
            ``None`` counts every pixel.
        **kwargs: forwarded to :class:`torchmetrics.Metric` (e.g. ``sync_on_compute``).

    Example:
        >>> metric = SegmentationMetrics(num_classes=21)
        >>> metric.update(logits, masks)  # logits at the mask's resolution
        >>> metric.compute()["mIoU"]
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    confmat: Tensor

    def __init__(self, num_classes: int, ignore_index: int | None = 255, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive int, got {num_classes!r}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.add_state(
            "confmat",
            default=torch.zeros(num_classes, num_classes, dtype=torch.int64),
            dist_reduce_fx="sum",
        )

    def update(
        self,
        preds: Tensor | None = None,
        target: Tensor | None = None,
        *,
        confmat: Tensor | None = None,
    ) -> None:
        """Add a batch, as predictions and targets or as its confusion counts.

        Args:
            preds: logits ``(N, C, H, W)`` at the target's resolution, or label maps
                ``(N, H, W)``.
            target: integer label maps ``(N, H, W)``.
            confmat: instead of ``preds`` and ``target``: the batch's ``(C, C)`` integer
                confusion counts, e.g. ``per_image_confusion(...).sum(0)`` when the
                per-image matrices are needed anyway (one counting pass instead of two).

        Raises:
            ValueError: neither or both forms given, or ``confmat`` of the wrong shape/dtype.
        """
        if confmat is None:
            if preds is None or target is None:
                raise ValueError("update() needs preds and target, or confmat=")
            confmat = confusion_matrix(
                preds.to(self.confmat.device),
                target.to(self.confmat.device),
                self.num_classes,
                self.ignore_index,
            )
        elif preds is not None or target is not None:
            raise ValueError("update() takes preds and target, or confmat=, not both")
        elif confmat.shape != self.confmat.shape or confmat.is_floating_point():
            raise ValueError(
                f"confmat must be an integer {tuple(self.confmat.shape)} tensor, got "
                f"{confmat.dtype} {tuple(confmat.shape)}"
            )
        self.confmat += confmat.to(self.confmat.device)

    def compute(self) -> dict[str, Tensor]:
        """Metrics over everything seen since the last reset (see :func:`metrics_from_confmat`)."""
        return metrics_from_confmat(self.confmat)


def checkerboard_score(probs: Tensor, period: int, max_size: int = 256) -> Tensor:
    """Share of a probability map's spectral energy at the up-sampling period's aliases.

    A decoder that upsamples by stride ``s`` with unevenly overlapping kernels (a transposed
    convolution whose kernel is not a multiple of its stride) stamps a pattern repeating
    every ``s`` pixels on its output (Odena et al. 2016, "Deconvolution and Checkerboard
    Artifacts"). Such a pattern puts its energy exactly at the spatial frequencies
    ``(k / s, l / s)``. The score is the fraction of the map's non-constant energy (2-D
    power spectrum, summed over classes, mean removed per class) at those frequencies,
    ``(k, l) != (0, 0)``: 0 for a map without periodic structure at ``s``, near 1 for a pure
    checkerboard. Smooth maps score near ``0``; the expected share of white noise is about
    ``s^2 / (H W)``.

    Args:
        probs: ``(N, C, H, W)`` class probabilities.
        period: The up-sampling stride ``s`` (e.g. the model's output stride: its aliases
            include those of every x2 step below it).
        max_size: The score is computed on the top-left crop of at most this many pixels a
            side (rounded down to a multiple of ``period``), to bound the FFT's cost.

    Returns:
        ``(N,)`` float64 scores; NaN for an image smaller than ``period`` or a constant map.
    """
    if probs.ndim != 4:
        raise ValueError(f"probs must be (N, C, H, W), got shape {tuple(probs.shape)}")
    if period < 2:
        raise ValueError(f"period must be >= 2, got {period}")
    n = probs.shape[0]
    h = min(probs.shape[-2], max_size) // period * period
    w = min(probs.shape[-1], max_size) // period * period
    if h == 0 or w == 0:
        return torch.full((n,), math.nan, dtype=torch.float64)
    x = probs[..., :h, :w].double()
    x = x - x.mean(dim=(-2, -1), keepdim=True)
    power = torch.fft.rfft2(x).abs().square().sum(dim=1)  # (N, h, w // 2 + 1)
    # rfft2 keeps half the columns: every column but 0 and Nyquist stands for two.
    weight = torch.full((power.shape[-1],), 2.0, dtype=torch.float64, device=power.device)
    weight[0] = 1.0
    if w % 2 == 0:
        weight[-1] = 1.0
    power = power * weight
    rows = torch.arange(0, h, h // period, device=power.device)
    cols = torch.arange(0, power.shape[-1], w // period, device=power.device)
    alias = power[:, rows][:, :, cols].sum(dim=(-2, -1)) - power[:, 0, 0]
    total = power.sum(dim=(-2, -1)) - power[:, 0, 0]
    return torch.where(total > 0, alias / total.clamp(min=1e-300), math.nan)
