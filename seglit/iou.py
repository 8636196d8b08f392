"""Per-class IoU of confusion matrices: one formula for numpy arrays and torch tensors.

``IoU_c = TP_c / (TP_c + FP_c + FN_c)``, NaN for a class whose union is empty (neither in
the target nor predicted), so that a mean over the defined classes skips it.
:func:`seglit.metrics.metrics_from_confmat` applies it to torch tensors, the summary's
statistics (:func:`seglit.summary.stats.mean_iou`) to numpy arrays. This module imports
neither, so the summary stays torch-free.
"""

from __future__ import annotations

import math
from types import ModuleType
from typing import Any

__all__ = ["class_iou"]


def class_iou(confmat: Any, xp: ModuleType) -> Any:
    """Per-class IoU of float64 confusion matrices (rows = target, columns = prediction).

    Args:
        confmat: ``(..., C, C)`` float64 counts, a numpy array or a torch tensor.
        xp: ``confmat``'s array module, ``numpy`` or ``torch`` (for its ``where``).

    Returns:
        ``(..., C)`` float64 IoU of each class, NaN where the union is empty.
    """
    tp = confmat.diagonal(0, -2, -1)
    union = confmat.sum(-1) + confmat.sum(-2) - tp  # (TP + FN) + (TP + FP) - TP
    defined = union > 0
    return xp.where(defined, tp / xp.where(defined, union, 1.0), math.nan)
