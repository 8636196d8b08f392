"""Augmentation pipelines and collation: padding never turns into background."""

from __future__ import annotations

import albumentations as A
import numpy as np
import pytest
import torch

from seglit.data.transforms import (
    IMAGENET_MEAN,
    as_hw,
    build_eval_transform,
    build_train_transform,
    pad_collate,
)


def _sample(height=20, width=30, label=1):
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    return image, np.full((height, width), label, dtype=np.uint8)


def test_train_pads_mask_with_void_and_image_with_mean():
    image, mask = _sample()
    # Jitter runs before padding, so the padding stays exactly the mean even with jitter on.
    transform = build_train_transform(
        (48, 64), scale_range=(1.0, 1.0), hflip=False, color_jitter=0.5, hue_jitter=0.1
    )
    out = transform(image=image, mask=mask)
    assert out["image"].shape == (3, 48, 64) and out["image"].dtype == torch.float32
    assert out["mask"].shape == (48, 64)
    values = set(torch.unique(out["mask"]).tolist())
    assert values == {1, 255}, "padding is void (255), never background (0)"
    assert int((out["mask"] == 1).sum()) == 20 * 30
    padded = out["mask"] == 255
    # Padded image pixels hold the mean, i.e. ~0 after normalisation.
    assert out["image"][:, padded].abs().max() < 0.03


def test_train_scales_masks_with_nearest():
    image, mask = _sample(40, 40, label=3)
    mask[:20] = 4
    transform = build_train_transform(32, scale_range=(0.5, 2.0), color_jitter=0.5)
    transform.set_random_seed(0)
    for _ in range(10):
        out = transform(image=image, mask=mask)
        assert out["image"].shape == (3, 32, 32)
        assert set(torch.unique(out["mask"]).tolist()) <= {3, 4, 255}


def test_strict_pipelines_reject_old_argument_names():
    with pytest.warns(UserWarning, match="mask_value"), pytest.raises(ValueError):
        A.Compose([A.PadIfNeeded(8, 8, mask_value=255)], strict=True)
    assert build_train_transform(8).strict and build_eval_transform().strict


def test_eval_never_resizes():
    image, mask = _sample(57, 131)
    out = build_eval_transform()(image=image, mask=mask)
    assert out["image"].shape == (3, 57, 131)
    assert torch.equal(out["mask"], torch.from_numpy(mask))
    expected = (image[0, 0, 0] / 255 - IMAGENET_MEAN[0]) / 0.229
    assert out["image"][0, 0, 0].item() == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize(
    "bad",
    [
        {"crop_size": (1, 2, 3)},
        {"crop_size": 0},
        {"scale_range": (2.0, 1.0)},
        {"color_jitter": -0.1},
        {"hue_jitter": 0.6},
    ],
)
def test_bad_settings(bad):
    with pytest.raises(ValueError):
        build_train_transform(**{"crop_size": 8, **bad})


def test_as_hw():
    assert as_hw(5) == (5, 5) and as_hw([4, 6]) == (4, 6)


def test_pad_collate_pads_images_with_zero_and_masks_with_void():
    samples = [
        {"image": torch.ones(3, 4, 5), "mask": torch.zeros(4, 5, dtype=torch.uint8), "name": "a"},
        {"image": torch.ones(3, 6, 3), "mask": torch.ones(6, 3, dtype=torch.uint8), "name": "b"},
    ]
    batch = pad_collate(samples)
    assert batch["image"].shape == (2, 3, 6, 5) and batch["mask"].shape == (2, 6, 5)
    assert batch["mask"].dtype == torch.int64 and batch["name"] == ["a", "b"]
    assert batch["image"][0, :, 4:].abs().sum() == 0 and batch["image"][1, :, :, 3:].sum() == 0
    assert (batch["mask"][0, 4:] == 255).all() and (batch["mask"][0, :4] == 0).all()
    assert (batch["mask"][1, :, 3:] == 255).all() and (batch["mask"][1, :, :3] == 1).all()


def test_pad_collate_keeps_sizes_for_predict():
    samples = [{"image": torch.ones(3, 4, 5), "name": "a", "size": (4, 5)}]
    batch = pad_collate(samples)
    assert "mask" not in batch and batch["size"] == [(4, 5)]
