"""The shared LightningDataModule base: pipelines, samplers, loaders and worker seeding."""

from __future__ import annotations

import functools
import os
import random
from abc import abstractmethod
from typing import ClassVar

import lightning as L
import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, get_worker_info

from seglit import IGNORE_INDEX
from seglit.data.folder import ImageFolderDataset
from seglit.data.palette import voc_palette
from seglit.data.samplers import SeededDataset, SeededSampler, UnpaddedDistributedSampler
from seglit.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    as_hw,
    build_eval_transform,
    build_train_transform,
    pad_collate,
)


class DataError(RuntimeError):
    """A datamodule's data are missing or unreadable; the message names the problem and the fix."""


def _world() -> tuple[int, int]:
    """``(rank, world_size)`` of the initialised process group, or ``(0, 1)``."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _reseed(dataset: Dataset, seed_entropy: list[int], global_rngs: bool = True) -> None:
    """Seed the dataset's albumentations pipeline (and numpy and ``random`` if ``global_rngs``)."""
    state = np.random.SeedSequence(seed_entropy).generate_state(2)
    if global_rngs:
        np.random.seed(int(state[0]))
        random.seed(int(state[1]))
    transform = getattr(dataset, "transform", None)
    if hasattr(transform, "set_random_seed"):
        # albumentations 2.x Compose keeps its own RNG, untouched by the global seeds above.
        transform.set_random_seed(int(state[0]))


def _run_seed() -> int:
    """The run's seed (``seed_everything`` sets ``PL_GLOBAL_SEED``), else one drawn from torch."""
    seed = os.environ.get("PL_GLOBAL_SEED")
    return int(seed) if seed is not None else int(torch.randint(0, 2**31 - 1, ()).item())


def seed_worker(worker_id: int, rank: int = 0) -> None:
    """DataLoader ``worker_init_fn``: give each worker (and rank) its own augmentation stream.

    ``torch.initial_seed()`` in a worker is the loader's base seed (drawn from the main
    process's torch RNG, hence reproducible from ``seed_everything``) plus the worker id; the
    rank is mixed in because every DDP rank starts from the same run seed.
    """
    info = get_worker_info()
    if info is not None:
        _reseed(info.dataset, [torch.initial_seed(), rank, worker_id])


class SegmentationDataModule(L.LightningDataModule):
    """Base for segmentation datamodules: subclasses say which datasets and classes exist.

    Batches are dicts: ``{"image": float32 (N, 3, H, W) normalised, "mask": int64 (N, H, W)
    with 255 void, "name": list[str]}``; predict batches hold ``image``, ``name`` and ``size``
    (original ``(H, W)``) instead of ``mask``. Validation, test and predict images keep their
    original resolution (``val_batch_size > 1`` pad-collates: image 0, mask 255).

    Under DDP (``Trainer(use_distributed_sampler=False)``, as the seglit CLI sets it), the
    datamodule shards the data itself: training with :class:`SeededSampler` (order and
    augmentations a pure function of the run's seed and the epoch, so an interrupted run
    resumes exactly and results do not depend on ``num_workers``), evaluation with
    ``UnpaddedDistributedSampler`` so every image is scored exactly once.

    Args:
        batch_size: training batch size (per process).
        val_batch_size: validation/test/predict batch size (per process).
        num_workers: DataLoader worker processes.
        crop_size: training crop ``(height, width)`` or one int for a square.
        scale_range: range of the random training scale factor.
        hflip: random horizontal flips during training.
        color_jitter: brightness/contrast/saturation jitter strength (0 disables it).
        hue_jitter: hue jitter, 0..0.5 (off by default: it costs more than the rest).
        mean: per-channel normalisation mean, 0..1 scale.
        std: per-channel normalisation std, 0..1 scale.
        pin_memory: pin batches in page-locked memory.
        persistent_workers: keep workers alive between epochs.
        predict_dir: folder of images for ``seglit predict``.
    """

    def __init__(
        self,
        batch_size: int = 8,
        val_batch_size: int = 1,
        num_workers: int = 4,
        crop_size: int | tuple[int, int] = 512,
        scale_range: tuple[float, float] = (0.5, 2.0),
        hflip: bool = True,
        color_jitter: float = 0.2,
        hue_jitter: float = 0.0,
        mean: tuple[float, float, float] = IMAGENET_MEAN,
        std: tuple[float, float, float] = IMAGENET_STD,
        pin_memory: bool = True,
        persistent_workers: bool = False,
        predict_dir: str | None = None,
    ):
        super().__init__()
        if batch_size < 1 or val_batch_size < 1:
            raise ValueError(
                f"batch_size and val_batch_size must be >= 1, got {batch_size}, {val_batch_size}"
            )
        if num_workers < 0:
            raise ValueError(f"num_workers must be >= 0, got {num_workers}")
        if len(mean) != 3 or len(std) != 3 or min(std) <= 0:
            raise ValueError(f"mean and std need 3 values (std > 0), got {mean} and {std}")
        self.batch_size = batch_size
        self.val_batch_size = val_batch_size
        self.num_workers = num_workers
        self.crop_size = as_hw(crop_size)
        self.scale_range = tuple(float(v) for v in scale_range)
        self.hflip = hflip
        self.color_jitter = color_jitter
        self.hue_jitter = hue_jitter
        self._mean = tuple(float(v) for v in mean)
        self._std = tuple(float(v) for v in std)
        self.pin_memory = pin_memory
        self.persistent_workers = persistent_workers
        self.predict_dir = predict_dir
        # Build the training pipeline now so bad augmentation settings fail before training.
        self.train_transform = build_train_transform(
            self.crop_size, self.scale_range, hflip, color_jitter, self._mean, self._std, hue_jitter
        )
        self.eval_transform = build_eval_transform(self._mean, self._std)
        self.train_dataset: Dataset | None = None
        self.val_dataset: Dataset | None = None
        self.test_dataset: Dataset | None = None
        self.predict_dataset: Dataset | None = None

    # ----- what a dataset declares -------------------------------------------------------------

    CLASSES: ClassVar[tuple[str, ...]] = ()
    """Class names of the dataset (subclasses set it); the label value is the index."""

    PALETTE: ClassVar[tuple[tuple[int, int, int], ...] | None] = None
    """One ``(r, g, b)`` colour per class; ``None`` uses the Pascal VOC colour map."""

    @property
    def class_names(self) -> list[str]:
        """Class names; the label value is the index in this list."""
        return list(self.CLASSES)

    @property
    def palette(self) -> list[tuple[int, int, int]]:
        """One ``(r, g, b)`` colour per class, for visualisation."""
        return list(self.PALETTE) if self.PALETTE else voc_palette(len(self.CLASSES))

    @abstractmethod
    def build_dataset(self, stage: str, transform) -> Dataset:
        """The dataset for ``stage`` (``"train"``, ``"val"`` or ``"test"``) with ``transform``."""

    @property
    def num_classes(self) -> int:
        """Number of classes (including background)."""
        return len(self.class_names)

    @property
    def ignore_index(self) -> int:
        """Label value of void pixels."""
        return IGNORE_INDEX

    @property
    def mean(self) -> tuple[float, float, float]:
        """Normalisation mean (0..1 scale), as given to ``Normalize``."""
        return self._mean

    @property
    def std(self) -> tuple[float, float, float]:
        """Normalisation std (0..1 scale), as given to ``Normalize``."""
        return self._std

    def check_data(self) -> int | None:
        """Check, cheaply, that the data exist and read: build the ``train`` and ``val``
        datasets and read the first sample of each (``python -m seglit.data check`` reads them
        all).

        Returns:
            The number of samples in the train split (``None`` from a subclass that cannot
            tell without reading its data).

        Raises:
            DataError: naming the file or folder and, where there is one, the command that
                fixes it.
        """
        sizes = []
        for stage in ("train", "val"):
            try:
                dataset = self.build_dataset(stage, None)
                sizes.append(len(dataset))
                if sizes[-1] == 0:
                    raise ValueError(f"the {stage} split holds no samples")
                dataset[0]
            except (OSError, ValueError) as err:
                raise DataError(f"{type(self).__name__}, {stage} split: {err}") from None
        return sizes[0]

    # ----- Lightning hooks ---------------------------------------------------------------------

    def setup(self, stage: str | None = None) -> None:
        """Build the datasets the stage needs (errors for missing data surface here)."""
        if stage in ("fit", None) and self.train_dataset is None:
            self.train_dataset = self.build_dataset("train", self.train_transform)
        if stage in ("fit", "validate", None) and self.val_dataset is None:
            self.val_dataset = self.build_dataset("val", self.eval_transform)
        if stage in ("test", None) and self.test_dataset is None:
            self.test_dataset = self.build_dataset("test", self.eval_transform)
        if stage == "predict" and self.predict_dataset is None:
            if self.predict_dir is None:
                raise ValueError(
                    "seglit predict needs data.predict_dir: a folder of images to segment"
                )
            self.predict_dataset = ImageFolderDataset(self.predict_dir, self.eval_transform)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self._require(self.train_dataset, "train"), train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self._require(self.val_dataset, "val"), train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self._require(self.test_dataset, "test"), train=False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self._require(self.predict_dataset, "predict"), train=False)

    # ----- helpers -----------------------------------------------------------------------------

    @staticmethod
    def _require(dataset: Dataset | None, name: str) -> Dataset:
        if dataset is None:
            raise RuntimeError(f"the {name} dataset is not built: call setup() first")
        return dataset

    def _loader(self, dataset: Dataset, train: bool) -> DataLoader:
        rank, world_size = _world()
        sampler = None
        if train:
            if len(dataset) // world_size < 1:
                raise ValueError(
                    f"the train dataset has {len(dataset)} samples for {world_size} processes"
                )
            sampler = SeededSampler(dataset, _run_seed(), world_size, rank)
            dataset = SeededDataset(dataset)
        elif world_size > 1:
            sampler = UnpaddedDistributedSampler(dataset, world_size, rank)
        batch_size = self.batch_size if train else self.val_batch_size
        # Drop a ragged last batch (a batch of one breaks BatchNorm) unless that is all.
        drop_last = train and len(sampler) >= batch_size
        return DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory and torch.cuda.is_available(),
            persistent_workers=self.persistent_workers and self.num_workers > 0,
            drop_last=drop_last,
            collate_fn=pad_collate,
            worker_init_fn=functools.partial(seed_worker, rank=rank),
        )
