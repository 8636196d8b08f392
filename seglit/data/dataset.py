"""The shared part of the folder-layout readers (VOC, Cityscapes): one sample per image."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from torch.utils.data import Dataset


class LabelledImageDataset(Dataset):
    """Images with label maps, read by :meth:`read` and named by :attr:`names`.

    Subclasses fill ``names`` (one id per sample), set ``transform`` and implement
    :meth:`read`; a sample is ``{"image", "mask", "name"}`` after the transform.
    """

    names: list[str]
    transform: Callable | None = None

    def read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Read and check sample ``index`` without the transform: ``(image, mask)``."""
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, index: int) -> dict:
        image, mask = self.read(index)
        sample = {"image": image, "mask": mask}
        if self.transform is not None:
            sample = dict(self.transform(image=image, mask=mask))
        sample["name"] = self.names[index]
        return sample
