"""Pascal VOC 2012 segmentation (+ SBD augmented split): class names and the dataset reader."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from seglit.data.dataset import LabelledImageDataset
from seglit.data.io import (
    check_label_values,
    check_same_size,
    read_image,
    read_label,
    read_split_file,
)

VOC_CLASSES: tuple[str, ...] = (
    "background",
    "aeroplane",
    "bicycle",
    "bird",
    "boat",
    "bottle",
    "bus",
    "car",
    "cat",
    "chair",
    "cow",
    "diningtable",
    "dog",
    "horse",
    "motorbike",
    "person",
    "pottedplant",
    "sheep",
    "sofa",
    "train",
    "tvmonitor",
)
"""The 21 VOC classes; the label value is the index in this tuple (255 = void)."""

SBD_DIR = Path("benchmark_RELEASE") / "dataset"
"""Where the original SBD archive unpacks, relative to the dataset root."""

AUG_MASK_DIR = "SegmentationClassAug"
"""Folder (inside ``VOC2012``) of converted SBD masks, as written by ``prepare sbd``."""


def voc_dir(root: str | os.PathLike) -> Path:
    """``root/VOCdevkit/VOC2012``, the folder every VOC path is relative to."""
    return Path(root) / "VOCdevkit" / "VOC2012"


def read_sbd_mat(path: Path) -> np.ndarray:
    """Read an SBD ``cls/<id>.mat`` file as a uint8 class-index map (0..20, 255 void).

    Raises:
        ValueError: the file is unreadable or does not hold ``GTcls.Segmentation``.
    """
    from scipy.io import loadmat

    try:
        segmentation = loadmat(str(path), squeeze_me=False)["GTcls"]["Segmentation"][0, 0]
    except FileNotFoundError:
        raise
    except (OSError, ValueError, KeyError, IndexError, TypeError) as err:
        raise ValueError(f"cannot read GTcls.Segmentation from SBD file {path}: {err}") from err
    values = np.asarray(segmentation)
    # a cast alone would wrap 256 to 0 (background) and -1 to 255 (void) without a word
    if values.dtype.kind not in "biuf" or not np.all((values >= 0) & (values <= 255)):
        raise ValueError(f"SBD file {path}: GTcls.Segmentation holds values outside 0..255")
    if values.dtype.kind == "f" and not np.all(values == np.round(values)):
        raise ValueError(f"SBD file {path}: GTcls.Segmentation holds non-integer values")
    return values.astype(np.uint8)


class VOCSegmentationDataset(LabelledImageDataset):
    """Pascal VOC segmentation samples read straight from the distributed folder layout.

    ``root`` is the folder holding ``VOCdevkit/VOC2012`` (the same ``root`` torchvision's
    ``VOCSegmentation`` takes). Ids come from ``ImageSets/Segmentation/<split>.txt``, images
    from ``JPEGImages/<id>.jpg`` and masks from ``SegmentationClass/<id>.png``, read as palette
    indices (never through RGB). For ids without a VOC mask (the SBD part of ``trainaug``) the
    mask comes from ``SegmentationClassAug/<id>.png`` or, failing that, from the original SBD
    ``benchmark_RELEASE/dataset/cls/<id>.mat``.

    Every file is checked to exist when the dataset is built; each sample is checked when read
    (image and mask sizes agree, mask values are classes or 255). Problems raise errors naming
    the file.

    Args:
        root: dataset root.
        split: split name (a file in ``ImageSets/Segmentation``), e.g. ``train``, ``val``,
            ``trainaug``.
        transform: optional callable ``transform(image=..., mask=...) -> dict`` (an
            albumentations ``Compose``) applied to the uint8 arrays.
        num_classes: number of classes including background (21 for VOC); mask values must be
            below it or 255.

    Raises:
        FileNotFoundError: the root, the split file, or a listed image/mask is missing.
        ValueError: the split file is empty.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        split: str = "train",
        transform: Callable | None = None,
        num_classes: int = len(VOC_CLASSES),
    ):
        self.root = Path(root)
        self.split = split
        self.transform = transform
        self.num_classes = num_classes
        base = voc_dir(root)
        if not base.is_dir():
            raise FileNotFoundError(
                f"VOC folder {base} not found: root={str(root)!r} must hold VOCdevkit/VOC2012 "
                f"(get it with: python -m seglit.data prepare voc --root {root} --download)"
            )
        try:
            self.names = read_split_file(base / "ImageSets" / "Segmentation" / f"{split}.txt")
        except FileNotFoundError as err:
            if split != "trainaug":
                raise
            raise FileNotFoundError(
                f"{err}; the trainaug split (VOC train + SBD) is made by: "
                f"python -m seglit.data prepare sbd --root {root} --download"
            ) from None
        self.images = [base / "JPEGImages" / f"{i}.jpg" for i in self.names]
        self.masks = [self._find_mask(base, i) for i in self.names]
        missing = [p for p in self.images if not p.is_file()]
        missing += [p for p in self.masks if not p.is_file()]
        if missing:
            listed = "\n  ".join(str(p) for p in missing[:10])
            more = f"\n  ... and {len(missing) - 10} more" if len(missing) > 10 else ""
            raise FileNotFoundError(
                f"split {split!r} ({base / 'ImageSets' / 'Segmentation' / f'{split}.txt'}) lists "
                f"{len(missing)} files that do not exist:\n  {listed}{more}"
            )

    def _find_mask(self, base: Path, image_id: str) -> Path:
        voc_mask = base / "SegmentationClass" / f"{image_id}.png"
        if voc_mask.is_file():
            return voc_mask
        aug_mask = base / AUG_MASK_DIR / f"{image_id}.png"
        if aug_mask.is_file():
            return aug_mask
        sbd_mask = self.root / SBD_DIR / "cls" / f"{image_id}.mat"
        if sbd_mask.is_file():
            return sbd_mask
        return voc_mask  # reported as missing by the caller

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Read and check sample ``index`` without the transform.

        Returns:
            ``(image, mask)``: uint8 arrays (H, W, 3) and (H, W).

        Raises:
            ValueError: corrupt file, size mismatch, RGB mask, or out-of-range mask values.
        """
        image_path, mask_path = self.images[index], self.masks[index]
        image = read_image(image_path)
        mask = read_sbd_mat(mask_path) if mask_path.suffix == ".mat" else read_label(mask_path)
        check_same_size(image, mask, image_path, mask_path)
        check_label_values(mask, self.num_classes, mask_path)
        return image, mask
