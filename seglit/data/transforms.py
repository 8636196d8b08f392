"""albumentations pipelines for segmentation and the collate functions that batch their output.

Every pipeline is built with ``strict=True`` so that a misspelt or renamed argument (e.g. the
albumentations 1.x ``mask_value``, which 2.x ignores with a warning and then pads masks with 0)
is an error instead of a silently wrong label.
"""

from __future__ import annotations

from collections.abc import Sequence

import albumentations as A
import cv2
import torch
import torch.nn.functional as F

from seglit import IGNORE_INDEX

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def as_hw(size: int | Sequence[int]) -> tuple[int, int]:
    """Turn a crop size given as ``int`` or ``(height, width)`` into ``(height, width)``."""
    if isinstance(size, int):
        height = width = size
    else:
        if len(size) != 2:
            raise ValueError(f"crop_size must be an int or (height, width), got {size!r}")
        height, width = (int(v) for v in size)
    if height < 1 or width < 1:
        raise ValueError(f"crop_size must be positive, got {size!r}")
    return height, width


def build_train_transform(
    crop_size: int | Sequence[int],
    scale_range: Sequence[float] = (0.5, 2.0),
    hflip: bool = True,
    color_jitter: float = 0.2,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    hue_jitter: float = 0.0,
) -> A.Compose:
    """The training pipeline: photometric jitter, scale, pad, crop, flip, normalise, to tensor.

    The image is padded with the dataset mean (zero after normalisation) and the mask with 255,
    so padding never becomes background. Images are resized bilinearly, masks with nearest.
    Jitter runs first, on the original-sized image: it is per-pixel, so this costs the least and
    leaves the padding at exactly the mean.

    Args:
        crop_size: output ``(height, width)`` (or one int for a square).
        scale_range: ``(low, high)`` range of the random scale factor.
        hflip: flip horizontally with probability 0.5.
        color_jitter: strength of brightness, contrast and saturation jitter (applied with
            probability 0.8); 0 disables it.
        mean: per-channel mean in 0..1 (for ``Normalize``).
        std: per-channel std in 0..1.
        hue_jitter: hue jitter (0..0.5, fraction of the hue circle); off by default because it
            needs an HSV round trip that costs more than the rest of the pipeline.

    Returns:
        An ``A.Compose`` whose output image is a float32 (3, H, W) tensor and mask a (H, W) tensor.
    """
    height, width = as_hw(crop_size)
    low, high = (float(v) for v in scale_range)
    if not 0 < low <= high:
        raise ValueError(f"scale_range must satisfy 0 < low <= high, got {tuple(scale_range)}")
    if color_jitter < 0:
        raise ValueError(f"color_jitter must be >= 0, got {color_jitter}")
    if not 0 <= hue_jitter <= 0.5:
        raise ValueError(f"hue_jitter must be in [0, 0.5], got {hue_jitter}")
    fill = tuple(round(255 * m) for m in mean)
    transforms: list = []
    if color_jitter > 0 or hue_jitter > 0:
        transforms.append(
            A.ColorJitter(
                brightness=color_jitter,
                contrast=color_jitter,
                saturation=color_jitter,
                hue=hue_jitter,
                p=0.8,
            )
        )
    if (low, high) != (1.0, 1.0):
        transforms.append(
            A.RandomScale(
                scale_limit=(low - 1.0, high - 1.0),
                interpolation=cv2.INTER_LINEAR,
                mask_interpolation=cv2.INTER_NEAREST,
                p=1.0,
            )
        )
    transforms += [
        A.PadIfNeeded(
            min_height=height,
            min_width=width,
            border_mode=cv2.BORDER_CONSTANT,
            fill=fill,
            fill_mask=IGNORE_INDEX,
        ),
        A.RandomCrop(height=height, width=width),
    ]
    if hflip:
        transforms.append(A.HorizontalFlip(p=0.5))
    transforms += [A.Normalize(mean=tuple(mean), std=tuple(std)), A.ToTensorV2()]
    return A.Compose(transforms, strict=True)


def build_eval_transform(
    mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> A.Compose:
    """The validation/test/predict pipeline: normalise and convert only, never resize."""
    return A.Compose([A.Normalize(mean=tuple(mean), std=tuple(std)), A.ToTensorV2()], strict=True)


def pad_collate(samples: list[dict]) -> dict:
    """Batch samples of possibly different sizes by padding at the bottom/right.

    Images are padded with 0 (the mean after normalisation) and masks with 255 (void), so padded
    pixels never count in the loss or the metrics. Same-sized samples are simply stacked.

    Args:
        samples: dicts with ``image`` (3, H, W) float tensors, ``name`` strings, and optionally
            ``mask`` (H, W) tensors and ``size`` ``(H, W)`` tuples.

    Returns:
        ``{"image": (N, 3, H, W) float32, "mask": (N, H, W) int64, "name": [...], "size": ...}``
        where ``H, W`` are the largest in the batch; ``mask`` and ``size`` only when the samples
        have them.
    """
    height = max(s["image"].shape[-2] for s in samples)
    width = max(s["image"].shape[-1] for s in samples)

    def pad(t: torch.Tensor, value: float) -> torch.Tensor:
        dh, dw = height - t.shape[-2], width - t.shape[-1]
        return F.pad(t, (0, dw, 0, dh), value=value) if dh or dw else t

    batch: dict = {
        "image": torch.stack([pad(s["image"].float(), 0.0) for s in samples]),
        "name": [s["name"] for s in samples],
    }
    if "mask" in samples[0]:
        batch["mask"] = torch.stack([pad(s["mask"].long(), IGNORE_INDEX) for s in samples])
    if "size" in samples[0]:
        batch["size"] = [tuple(s["size"]) for s in samples]
    return batch
