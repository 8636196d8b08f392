"""Per-image records: each image counts once, metrics from one confusion matrix."""

from __future__ import annotations

import math

import pytest
import torch

from seglit.evaluation import DuplicateImageError, ImageRecord, eval_result, gather_unique_records
from seglit.metrics import checkerboard_score, metrics_from_confmat


def _record(name: str, seed: int, crf: bool = False) -> ImageRecord:
    g = torch.Generator().manual_seed(seed)
    confmat = torch.randint(0, 50, (3, 3), generator=g)
    before = torch.randint(0, 50, (3, 3), generator=g) if crf else None
    return ImageRecord(
        name, confmat, float(confmat.sum()), float(confmat.sum()), before, 0.01 * seed
    )


def test_repeated_images_count_once_and_sort_by_name():
    records = [_record("b", 1), _record("a", 2), _record("b", 1)]  # "b" padded in twice
    unique = gather_unique_records(records)
    assert [r.name for r in unique] == ["a", "b"]
    result = eval_result(unique, "val", 0, 4, ["x", "y", "z"])
    expected = metrics_from_confmat(records[0].confmat + records[1].confmat)
    assert result.metrics["mIoU"] == pytest.approx(float(expected["mIoU"]))
    assert (result.confmat == (records[0].confmat + records[1].confmat).numpy()).all()
    assert result.image_names == ["a", "b"] and result.image_confmats.shape == (2, 3, 3)


def test_two_different_results_under_one_name_are_refused():
    with pytest.raises(DuplicateImageError, match="image 'a' was scored twice"):
        gather_unique_records([_record("a", 1), _record("a", 2)])


def test_before_crf_and_checkerboard_metrics_are_reported():
    records = [_record("a", 1, crf=True), _record("b", 2, crf=True)]
    result = eval_result(records, "val", 1, 8, ["x", "y", "z"])
    before = metrics_from_confmat(records[0].confmat_before_crf + records[1].confmat_before_crf)
    assert result.metrics["mIoU_before_crf"] == pytest.approx(float(before["mIoU"]))
    assert result.metrics["checkerboard"] == pytest.approx((0.01 + 0.02) / 2)
    plain = eval_result([_record("a", 1)], "val", 1, 8, ["x", "y", "z"])
    assert "mIoU_before_crf" not in plain.metrics


def test_checkerboard_score_separates_transposed_k3_from_resize_conv_at_init():
    from seglit.models.blocks import Upsample

    torch.manual_seed(0)
    features = torch.nn.functional.avg_pool2d(torch.randn(4, 8, 40, 40), 5, 1, 2)
    scores = {}
    for mode, kernel in [("transposed", 3), ("bilinear_conv", None), ("nearest_conv", None)]:
        torch.manual_seed(1)
        up = Upsample(8, 5, 2, mode, kernel_size=kernel)
        with torch.no_grad():
            probs = torch.softmax(up(features, (80, 80)), 1)
        scores[mode] = checkerboard_score(probs, period=2)
    assert (scores["transposed"] > 100 * scores["bilinear_conv"]).all()
    assert (scores["transposed"] > 100 * scores["nearest_conv"]).all()


def test_log_probabilities_keep_a_checkerboard_that_saturated_probabilities_hide():
    """A confident net with a period-2 pattern in its logits: the probabilities barely show
    it (they saturate), the log-probabilities do (``checkerboard_logits``)."""
    rows, cols = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    smooth = torch.where(cols < 16, 12.0, -12.0)
    pattern = 2.0 * ((rows + cols) % 2 * 2 - 1)
    logits = torch.stack([smooth + pattern, -smooth])[None]
    log_probs = torch.log_softmax(logits, 1)
    on_probs = checkerboard_score(log_probs.exp(), 2).item()
    on_logits = checkerboard_score(log_probs, 2).item()
    assert on_probs < 0.01 and on_logits > 10 * on_probs
    record = ImageRecord("a", torch.eye(3, dtype=torch.int64), 1.0, 1.0, None, on_probs, on_logits)
    result = eval_result([record], "val", 0, 1, ["x", "y", "z"])
    assert result.metrics["checkerboard_logits"] == pytest.approx(on_logits)


def test_checkerboard_score_of_known_patterns():
    y, x = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    board = ((x + y) % 2).float()
    probs = torch.stack([board, 1 - board])[None]
    assert checkerboard_score(probs, 2).item() == pytest.approx(1.0)
    smooth = torch.stack([x / 31.0, 1 - x / 31.0]).float()[None]
    assert checkerboard_score(smooth, 2).item() < 0.02
    assert math.isnan(checkerboard_score(torch.ones(1, 2, 8, 8), 2).item())  # constant map
    assert math.isnan(checkerboard_score(torch.rand(1, 2, 3, 3), 4).item())  # smaller than s


def test_batch_image_names_of_collated_integer_ids():
    """A dataset's integer ids arrive as one tensor (tensor(0) alone is false)."""
    import torch

    from seglit.evaluation import batch_image_names

    assert batch_image_names({"name": torch.tensor([0])}) == ["0"]
    assert batch_image_names({"name": torch.tensor([3, 0])}) == ["3", "0"]
    assert batch_image_names({"name": ["a", "b"]}) == ["a", "b"]
    assert batch_image_names({}) is None
