"""A dataset over a folder of images without labels, for ``seglit predict``."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from torch.utils.data import Dataset

from seglit.data.io import IMAGE_SUFFIXES, read_image


class ImageFolderDataset(Dataset):
    """Every image file directly inside ``folder`` (sorted by name), with no mask.

    Samples are ``{"image": ..., "name": <file name>, "size": (height, width)}``; ``size`` is the
    original size, so predictions can be cut back to it after pad-collating.

    Args:
        folder: folder of images (``.jpg``, ``.png``, ...).
        transform: optional albumentations-style callable ``transform(image=...) -> dict``.

    Raises:
        FileNotFoundError: ``folder`` does not exist.
        ValueError: ``folder`` holds no image files.
    """

    def __init__(self, folder: str | os.PathLike, transform: Callable | None = None):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"predict_dir {self.folder} is not a folder")
        self.files = sorted(
            p for p in self.folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
        )
        if not self.files:
            raise ValueError(
                f"predict_dir {self.folder} holds no images "
                f"(looked for {', '.join(IMAGE_SUFFIXES)})"
            )
        self.transform = transform

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict:
        path = self.files[index]
        image = read_image(path)
        sample = {"image": image}
        if self.transform is not None:
            sample = dict(self.transform(image=image))
        sample["name"] = path.name
        sample["size"] = (image.shape[0], image.shape[1])
        return sample
