"""Datasets and LightningDataModules: Pascal VOC (+SBD), Cityscapes and built-in synthetic data.

Names are imported lazily (PEP 562) so that ``python -m seglit.data`` and the dataset readers do
not pay for importing Lightning.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_EXPORTS = {
    "DataError": "seglit.data.base",
    "SegmentationDataModule": "seglit.data.base",
    "VOCDataModule": "seglit.data.datamodules",
    "SyntheticVOCDataModule": "seglit.data.datamodules",
    "SyntheticFarCueDataModule": "seglit.data.datamodules",
    "CityscapesDataModule": "seglit.data.datamodules",
    "SyntheticCityscapesDataModule": "seglit.data.datamodules",
    "VOCSegmentationDataset": "seglit.data.voc",
    "VOC_CLASSES": "seglit.data.voc",
    "CityscapesDataset": "seglit.data.cityscapes",
    "CITYSCAPES_CLASSES": "seglit.data.cityscapes",
    "CITYSCAPES_PALETTE": "seglit.data.cityscapes",
    "label_ids_to_train_ids": "seglit.data.cityscapes",
    "train_ids_to_label_ids": "seglit.data.cityscapes",
    "ImageFolderDataset": "seglit.data.folder",
    "UnpaddedDistributedSampler": "seglit.data.samplers",
    "SYNTHETIC_CLASSES": "seglit.data.synthetic_render",
    "SyntheticSpec": "seglit.data.synthetic_spec",
    "write_synthetic_voc": "seglit.data.synthetic",
    "write_synthetic_cityscapes": "seglit.data.synthetic",
    "voc_palette": "seglit.data.palette",
}

__all__ = [
    "DataError",
    "CITYSCAPES_CLASSES",
    "CITYSCAPES_PALETTE",
    "CityscapesDataModule",
    "CityscapesDataset",
    "ImageFolderDataset",
    "SYNTHETIC_CLASSES",
    "SegmentationDataModule",
    "SyntheticCityscapesDataModule",
    "SyntheticFarCueDataModule",
    "SyntheticSpec",
    "SyntheticVOCDataModule",
    "UnpaddedDistributedSampler",
    "VOCDataModule",
    "VOCSegmentationDataset",
    "VOC_CLASSES",
    "label_ids_to_train_ids",
    "train_ids_to_label_ids",
    "voc_palette",
    "write_synthetic_cityscapes",
    "write_synthetic_voc",
]

if TYPE_CHECKING:
    from seglit.data.base import DataError, SegmentationDataModule
    from seglit.data.cityscapes import (
        CITYSCAPES_CLASSES,
        CITYSCAPES_PALETTE,
        CityscapesDataset,
        label_ids_to_train_ids,
        train_ids_to_label_ids,
    )
    from seglit.data.datamodules import (
        CityscapesDataModule,
        SyntheticCityscapesDataModule,
        SyntheticFarCueDataModule,
        SyntheticVOCDataModule,
        VOCDataModule,
    )
    from seglit.data.folder import ImageFolderDataset
    from seglit.data.palette import voc_palette
    from seglit.data.samplers import UnpaddedDistributedSampler
    from seglit.data.synthetic import write_synthetic_cityscapes, write_synthetic_voc
    from seglit.data.synthetic_render import SYNTHETIC_CLASSES
    from seglit.data.synthetic_spec import SyntheticSpec
    from seglit.data.voc import VOC_CLASSES, VOCSegmentationDataset


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(_EXPORTS[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'seglit.data' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
