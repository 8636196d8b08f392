"""Cityscapes (fine annotations): the label table, id mappings and the dataset reader."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np

from seglit import IGNORE_INDEX
from seglit.data.dataset import LabelledImageDataset
from seglit.data.io import check_label_values, check_same_size, read_image, read_label


class CityscapesLabel(NamedTuple):
    """One row of cityscapesScripts' ``helpers/labels.py`` (name, labelId, trainId, colour)."""

    name: str
    id: int
    train_id: int
    color: tuple[int, int, int]


CITYSCAPES_LABELS: tuple[CityscapesLabel, ...] = (
    CityscapesLabel("unlabeled", 0, 255, (0, 0, 0)),
    CityscapesLabel("ego vehicle", 1, 255, (0, 0, 0)),
    CityscapesLabel("rectification border", 2, 255, (0, 0, 0)),
    CityscapesLabel("out of roi", 3, 255, (0, 0, 0)),
    CityscapesLabel("static", 4, 255, (0, 0, 0)),
    CityscapesLabel("dynamic", 5, 255, (111, 74, 0)),
    CityscapesLabel("ground", 6, 255, (81, 0, 81)),
    CityscapesLabel("road", 7, 0, (128, 64, 128)),
    CityscapesLabel("sidewalk", 8, 1, (244, 35, 232)),
    CityscapesLabel("parking", 9, 255, (250, 170, 160)),
    CityscapesLabel("rail track", 10, 255, (230, 150, 140)),
    CityscapesLabel("building", 11, 2, (70, 70, 70)),
    CityscapesLabel("wall", 12, 3, (102, 102, 156)),
    CityscapesLabel("fence", 13, 4, (190, 153, 153)),
    CityscapesLabel("guard rail", 14, 255, (180, 165, 180)),
    CityscapesLabel("bridge", 15, 255, (150, 100, 100)),
    CityscapesLabel("tunnel", 16, 255, (150, 120, 90)),
    CityscapesLabel("pole", 17, 5, (153, 153, 153)),
    CityscapesLabel("polegroup", 18, 255, (153, 153, 153)),
    CityscapesLabel("traffic light", 19, 6, (250, 170, 30)),
    CityscapesLabel("traffic sign", 20, 7, (220, 220, 0)),
    CityscapesLabel("vegetation", 21, 8, (107, 142, 35)),
    CityscapesLabel("terrain", 22, 9, (152, 251, 152)),
    CityscapesLabel("sky", 23, 10, (70, 130, 180)),
    CityscapesLabel("person", 24, 11, (220, 20, 60)),
    CityscapesLabel("rider", 25, 12, (255, 0, 0)),
    CityscapesLabel("car", 26, 13, (0, 0, 142)),
    CityscapesLabel("truck", 27, 14, (0, 0, 70)),
    CityscapesLabel("bus", 28, 15, (0, 60, 100)),
    CityscapesLabel("caravan", 29, 255, (0, 0, 90)),
    CityscapesLabel("trailer", 30, 255, (0, 0, 110)),
    CityscapesLabel("train", 31, 16, (0, 80, 100)),
    CityscapesLabel("motorcycle", 32, 17, (0, 0, 230)),
    CityscapesLabel("bicycle", 33, 18, (119, 11, 32)),
)
"""The labelIds stored in ``*_gtFine_labelIds.png`` (0..33); ``license plate`` (-1) never is."""

_TRAIN_LABELS = sorted(
    (lab for lab in CITYSCAPES_LABELS if lab.train_id != 255), key=lambda x: x[2]
)

CITYSCAPES_CLASSES: tuple[str, ...] = tuple(lab.name for lab in _TRAIN_LABELS)
"""The 19 evaluated classes, indexed by trainId."""

CITYSCAPES_PALETTE: tuple[tuple[int, int, int], ...] = tuple(lab.color for lab in _TRAIN_LABELS)
"""The official colour of each trainId."""

LABEL_ID_TO_TRAIN_ID = np.full(256, IGNORE_INDEX, dtype=np.uint8)
"""Lookup table: ``LABEL_ID_TO_TRAIN_ID[label_ids]`` gives trainIds (255 for all other ids)."""
for _label in CITYSCAPES_LABELS:
    LABEL_ID_TO_TRAIN_ID[_label.id] = _label.train_id

TRAIN_ID_TO_LABEL_ID = np.zeros(256, dtype=np.uint8)
"""Lookup table for test-server submissions: trainId -> labelId (255/void -> 0, unlabeled)."""
for _label in _TRAIN_LABELS:
    TRAIN_ID_TO_LABEL_ID[_label.train_id] = _label.id

NUM_LABEL_IDS = len(CITYSCAPES_LABELS)


def label_ids_to_train_ids(label_ids: np.ndarray) -> np.ndarray:
    """Map a labelId map to trainIds (the 19 evaluated classes; everything else 255)."""
    return LABEL_ID_TO_TRAIN_ID[label_ids]


def train_ids_to_label_ids(train_ids: np.ndarray) -> np.ndarray:
    """Map a trainId prediction to labelIds, as the Cityscapes test server expects."""
    return TRAIN_ID_TO_LABEL_ID[train_ids]


class CityscapesDataset(LabelledImageDataset):
    """Cityscapes fine-annotation samples read from the distributed folder layout.

    ``root`` holds ``leftImg8bit/<split>/<city>/<name>_leftImg8bit.png`` and
    ``gtFine/<split>/<city>/<name>_gtFine_labelIds.png`` (the root torchvision's ``Cityscapes``
    takes). Masks come from ``<name>_gtFine_labelTrainIds.png`` when present (written by
    ``python -m seglit.data prepare cityscapes``), otherwise from the labelIds file mapped to
    trainIds on the fly. Samples are ``{"image", "mask", "name"}`` with trainIds 0..18 and 255.

    Args:
        root: dataset root.
        split: ``train``, ``val`` or ``test`` (a folder of ``leftImg8bit``).
        transform: optional callable ``transform(image=..., mask=...) -> dict``.

    Raises:
        FileNotFoundError: the root or split folder, or a mask, is missing.
        ValueError: the split holds no images.
    """

    def __init__(
        self, root: str | os.PathLike, split: str = "train", transform: Callable | None = None
    ):
        self.root = Path(root)
        self.split = split
        self.transform = transform
        image_dir = self.root / "leftImg8bit" / split
        if not image_dir.is_dir():
            found = sorted(p.name for p in (self.root / "leftImg8bit").glob("*") if p.is_dir())
            raise FileNotFoundError(
                f"Cityscapes split folder {image_dir} not found (splits found: "
                f"{', '.join(found) or 'none'}); root must hold leftImg8bit/ and gtFine/ "
                "(see: python -m seglit.data prepare cityscapes --root DIR)"
            )
        self.images = sorted(image_dir.glob("*/*_leftImg8bit.png"))
        if not self.images:
            raise ValueError(f"Cityscapes split folder {image_dir} holds no *_leftImg8bit.png")
        self.names = [p.name[: -len("_leftImg8bit.png")] for p in self.images]
        self.masks = [self._find_mask(p, n) for p, n in zip(self.images, self.names)]
        missing = [m for m in self.masks if not m.is_file()]
        if missing:
            listed = "\n  ".join(str(p) for p in missing[:10])
            raise FileNotFoundError(
                f"{len(missing)} Cityscapes images in {image_dir} have no label file:\n  {listed}"
            )

    def _find_mask(self, image: Path, name: str) -> Path:
        folder = self.root / "gtFine" / self.split / image.parent.name
        train_ids = folder / f"{name}_gtFine_labelTrainIds.png"
        return train_ids if train_ids.is_file() else folder / f"{name}_gtFine_labelIds.png"

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Read and check sample ``index`` without the transform: ``(image, trainId mask)``."""
        image_path, mask_path = self.images[index], self.masks[index]
        image = read_image(image_path)
        mask = read_label(mask_path)
        check_same_size(image, mask, image_path, mask_path)
        if mask_path.name.endswith("_labelIds.png"):
            check_label_values(mask, NUM_LABEL_IDS, mask_path)
            mask = label_ids_to_train_ids(mask)
        else:
            check_label_values(mask, len(CITYSCAPES_CLASSES), mask_path)
        return image, mask
