"""seglit.metrics against a plain numpy confusion-matrix reference."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from seglit.iou import class_iou
from seglit.metrics import (
    SegmentationMetrics,
    confusion_matrix,
    metrics_from_confmat,
    per_image_confusion,
)
from seglit.summary.stats import mean_iou

C = 6


def numpy_confmat(pred: np.ndarray, target: np.ndarray, num_classes: int, ignore: int = 255):
    """Reference: one np.add.at over the non-ignored pixels."""
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    keep = target != ignore
    np.add.at(cm, (target[keep], pred[keep]), 1)
    return cm


def numpy_metrics(cm: np.ndarray) -> dict:
    """Reference metrics with explicit loops over classes."""
    cm = cm.astype(np.float64)
    total = cm.sum()
    ious, accs, fw = [], [], 0.0
    per_class = np.full(len(cm), np.nan)
    for c in range(len(cm)):
        tp, fn, fp = cm[c, c], cm[c].sum() - cm[c, c], cm[:, c].sum() - cm[c, c]
        if tp + fp + fn > 0:
            per_class[c] = tp / (tp + fp + fn)
            ious.append(per_class[c])
            fw += (tp + fn) / total * per_class[c]
        if tp + fn > 0:
            accs.append(tp / (tp + fn))
    return {
        "mIoU": np.mean(ious),
        "acc": np.trace(cm) / total,
        "mAcc": np.mean(accs),
        "fwIoU": fw,
        "IoU": per_class,
    }


def random_batch(seed: int, n: int = 3, h: int = 17, w: int = 23):
    """Logits and targets with void pixels; class 4 never in target, class 5 never predicted."""
    g = torch.Generator().manual_seed(seed)
    target = torch.randint(0, C, (n, h, w), generator=g)
    target[target == 4] = 0
    target[torch.rand(n, h, w, generator=g) < 0.2] = 255
    logits = torch.randn(n, C, h, w, generator=g)
    logits[:, 5] = -1e3
    # Make predictions correlated with the target so IoUs are not all tiny.
    onehot = torch.nn.functional.one_hot(target.clamp(max=C - 1), C).permute(0, 3, 1, 2)
    logits = logits + 1.5 * onehot
    return logits, target.to(torch.uint8)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_confusion_matrix_matches_numpy(seed):
    logits, target = random_batch(seed)
    cm = confusion_matrix(logits, target, C)
    ref = numpy_confmat(logits.argmax(1).numpy(), target.numpy(), C)
    assert cm.dtype == torch.int64
    np.testing.assert_array_equal(cm.numpy(), ref)
    assert cm[4].sum() == 0 and cm[:, 5].sum() == 0  # absent from target / prediction
    assert cm.sum() == (target != 255).sum()


def test_logits_and_labels_agree():
    logits, target = random_batch(3)
    torch.testing.assert_close(
        confusion_matrix(logits, target, C), confusion_matrix(logits.argmax(1), target, C)
    )


def test_per_image_confusion_sums_to_batch():
    logits, target = random_batch(4, n=4)
    per = per_image_confusion(logits, target, C)
    assert per.shape == (4, C, C)
    for i in range(4):
        ref = numpy_confmat(logits[i].argmax(0).numpy(), target[i].numpy(), C)
        np.testing.assert_array_equal(per[i].numpy(), ref)
    torch.testing.assert_close(per.sum(0), confusion_matrix(logits, target, C))


@pytest.mark.parametrize("seed", [0, 5])
def test_metrics_match_numpy(seed):
    logits, target = random_batch(seed)
    cm = confusion_matrix(logits, target, C)
    got = metrics_from_confmat(cm)
    ref = numpy_metrics(cm.numpy())
    for key in ("mIoU", "acc", "mAcc", "fwIoU"):
        assert got[key].item() == pytest.approx(ref[key], abs=1e-12), key
    np.testing.assert_allclose(got["IoU"].numpy(), ref["IoU"], equal_nan=False, atol=1e-12)
    # Class 4 is absent from the target but predicted: union non-empty, IoU 0, counted.
    assert got["IoU"][4] == 0


def test_miou_skips_empty_unions():
    cm = torch.tensor([[5, 1, 0], [2, 2, 0], [0, 0, 0]])  # class 2 never seen nor predicted
    out = metrics_from_confmat(cm)
    assert torch.isnan(out["IoU"][2])
    assert out["mIoU"].item() == pytest.approx((5 / 8 + 2 / 5) / 2)
    assert out["acc"].item() == pytest.approx(7 / 10)
    assert out["mAcc"].item() == pytest.approx((5 / 6 + 2 / 4) / 2)
    assert out["fwIoU"].item() == pytest.approx(0.6 * 5 / 8 + 0.4 * 2 / 5)


def test_numpy_and_torch_share_one_iou_formula():
    """The summary's numpy mIoU and the logged torch mIoU are the same numbers, bit for bit."""
    rng = np.random.default_rng(0)
    cm = rng.integers(0, 1000, (8, 8))
    cm[3, :] = cm[:, 3] = 0  # a class with an empty union: NaN, skipped
    iou = class_iou(cm.astype(np.float64), np)
    assert np.isnan(iou[3])
    assert iou.tobytes() == class_iou(torch.from_numpy(cm).double(), torch).numpy().tobytes()
    assert metrics_from_confmat(torch.from_numpy(cm))["IoU"].numpy().tobytes() == iou.tobytes()
    assert metrics_from_confmat(torch.from_numpy(cm))["mIoU"].item() == pytest.approx(
        mean_iou(cm), abs=1e-15
    )


def test_empty_confmat_is_nan_not_zero():
    out = metrics_from_confmat(torch.zeros(3, 3, dtype=torch.int64))
    for key in ("mIoU", "acc", "mAcc", "fwIoU"):
        assert torch.isnan(out[key]), key
    assert torch.isnan(out["IoU"]).all()


def test_metric_accumulates_dataset_level():
    metric = SegmentationMetrics(num_classes=C)
    total = torch.zeros(C, C, dtype=torch.long)
    for seed in range(3):
        logits, target = random_batch(seed)
        metric.update(logits, target)
        total += confusion_matrix(logits, target, C)
    out = metric.compute()
    torch.testing.assert_close(out["confmat"], total)
    assert out["mIoU"].item() == pytest.approx(numpy_metrics(total.numpy())["mIoU"])


def test_update_with_precomputed_confusion_equals_update_with_predictions():
    from_preds, from_counts = SegmentationMetrics(num_classes=C), SegmentationMetrics(C)
    for seed in range(3):
        logits, target = random_batch(seed)
        from_preds.update(logits, target)
        from_counts.update(confmat=per_image_confusion(logits, target, C).sum(0))
    torch.testing.assert_close(from_counts.compute()["confmat"], from_preds.compute()["confmat"])
    assert from_counts.compute()["mIoU"].item() == from_preds.compute()["mIoU"].item()


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({}, "needs preds and target"),
        ({"confmat": torch.zeros(C, C, dtype=torch.long), "preds": torch.zeros(1)}, "not both"),
        ({"confmat": torch.zeros(C, C)}, "integer"),
        ({"confmat": torch.zeros(C, C + 1, dtype=torch.long)}, "integer"),
    ],
)
def test_update_rejects_ambiguous_or_bad_confusion(kwargs, match):
    with pytest.raises(ValueError, match=match):
        SegmentationMetrics(num_classes=C).update(**kwargs)


def test_ddp_like_state_sum_equals_whole():
    """Two 'ranks' with disjoint halves (odd split) reduce to the single-process result."""
    logits, target = random_batch(7, n=5)
    whole = SegmentationMetrics(num_classes=C)
    whole.update(logits, target)
    rank0, rank1 = SegmentationMetrics(num_classes=C), SegmentationMetrics(num_classes=C)
    rank0.update(logits[:3], target[:3])
    rank1.update(logits[3:], target[3:])
    torch.testing.assert_close(rank0.confmat + rank1.confmat, whole.confmat)
    rank0.merge_state(rank1)  # torchmetrics applies dist_reduce_fx ("sum")
    assert rank0.compute()["mIoU"] == whole.compute()["mIoU"]


def test_deterministic_mode_identical():
    logits, target = random_batch(8)
    expected = confusion_matrix(logits, target, C)
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        metric = SegmentationMetrics(num_classes=C)
        metric.update(logits, target)
        got = metric.compute()["confmat"]
    finally:
        torch.use_deterministic_algorithms(previous)
    torch.testing.assert_close(got, expected)


def test_ignore_index_none_counts_everything():
    target = torch.tensor([[[0, 1], [1, 1]]])
    cm = confusion_matrix(target.clone(), target, 2, ignore_index=None)
    assert cm.tolist() == [[1, 0], [0, 3]]


def test_bad_target_values_named():
    target = torch.tensor([[[0, 7], [255, 9]]])
    with pytest.raises(ValueError, match=r"\[7, 9\].*outside \[0, 3\)"):
        confusion_matrix(torch.zeros(1, 2, 2, dtype=torch.long), target, 3)


def test_bad_pred_labels_named():
    target = torch.zeros(1, 2, 2, dtype=torch.long)
    with pytest.raises(ValueError, match=r"predicted labels.*\[3\]"):
        confusion_matrix(torch.full((1, 2, 2), 3), target, 3)


def test_logits_at_wrong_resolution_rejected():
    metric = SegmentationMetrics(num_classes=3)
    with pytest.raises(ValueError, match="upsample the logits"):
        metric.update(torch.randn(1, 3, 4, 4), torch.zeros(1, 8, 8, dtype=torch.long))
    with pytest.raises(ValueError, match="number of classes"):
        metric.update(torch.randn(1, 5, 8, 8), torch.zeros(1, 8, 8, dtype=torch.long))


def test_float_target_rejected():
    with pytest.raises(ValueError, match="integer label map"):
        confusion_matrix(torch.randn(1, 3, 2, 2), torch.zeros(1, 2, 2), 3)


def test_all_ignored_and_empty_batches_count_nothing():
    metric = SegmentationMetrics(num_classes=3)
    metric.update(torch.randn(2, 3, 4, 4), torch.full((2, 4, 4), 255))
    metric.update(torch.randn(0, 3, 4, 4), torch.zeros(0, 4, 4, dtype=torch.long))
    out = metric.compute()
    assert out["confmat"].sum() == 0 and torch.isnan(out["mIoU"])
