"""Concrete datamodules: Pascal VOC, Cityscapes and the built-in synthetic data in both layouts."""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import replace

from torch.utils.data import Dataset

from seglit.data.base import SegmentationDataModule, _world
from seglit.data.cityscapes import CITYSCAPES_CLASSES, CITYSCAPES_PALETTE, CityscapesDataset
from seglit.data.synthetic import (
    MARKER_NAME,
    SyntheticSpec,
    write_synthetic_cityscapes,
    write_synthetic_voc,
)
from seglit.data.synthetic_lab import CONTEXT_CUE_SHARE, FAR_CUE_DISTANCE
from seglit.data.synthetic_render import SYNTHETIC_CLASSES
from seglit.data.voc import VOC_CLASSES, VOCSegmentationDataset, voc_dir


class _SplitsDataModule(SegmentationDataModule):
    """Shared part of the datamodules of real datasets: the dataset's ``root`` and the split
    each stage reads (``splits``).

    Args:
        root: the dataset's folder.
        train_split: split trained on.
        val_split: split validated on.
        test_split: split tested on (``val`` by default: the test labels of VOC and
            Cityscapes are not public).
        **kwargs: loader and augmentation settings of ``SegmentationDataModule``.
    """

    def __init__(
        self,
        root: str,
        train_split: str = "train",
        val_split: str = "val",
        test_split: str = "val",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.root = root
        self.splits = {"train": train_split, "val": val_split, "test": test_split}


class VOCDataModule(_SplitsDataModule):
    """Pascal VOC 2012 segmentation (21 classes, 255 void).

    Args:
        root: folder holding ``VOCdevkit/VOC2012`` (torchvision's ``VOCSegmentation`` root).
        train_split: split trained on (``train`` or ``trainaug``).
        val_split: split validated on.
        test_split: split tested on (VOC test labels are not public, so ``val`` by default).
        **kwargs: loader and augmentation settings of ``SegmentationDataModule``.
    """

    CLASSES = VOC_CLASSES

    def build_dataset(self, stage: str, transform) -> Dataset:
        if (voc_dir(self.root) / MARKER_NAME).is_file():
            raise ValueError(
                f"root {self.root!r} holds seglit's synthetic dataset ({MARKER_NAME}), not Pascal "
                "VOC: use seglit.data.SyntheticVOCDataModule for it, or point root at real VOC"
            )
        return VOCSegmentationDataset(
            self.root, self.splits[stage], transform=transform, num_classes=self.num_classes
        )


class _SyntheticDataModule(SegmentationDataModule):
    """Shared part of the synthetic datamodules: the ``SyntheticSpec`` (``spec``) built from the
    arguments, the cache root it names, generation."""

    layout: str

    def __init__(
        self,
        root: str | None = None,
        num_train: int = 160,
        num_val: int = 40,
        seed: int = 0,
        fine_structure: float = 0.0,
        context: float = 0.0,
        scale_variation: float = 0.0,
        context_cue_share: float = CONTEXT_CUE_SHARE,
        min_size: int = 57,
        max_size: int = 131,
        crop_size: int | tuple[int, int] = 64,
        scale_range: tuple[float, float] = (0.75, 1.5),
        num_workers: int = 0,
        **kwargs,
    ):
        super().__init__(
            crop_size=crop_size, scale_range=scale_range, num_workers=num_workers, **kwargs
        )
        self.spec = SyntheticSpec(
            num_train=num_train,
            num_val=num_val,
            seed=seed,
            min_size=min_size,
            max_size=max_size,
            fine_structure=fine_structure,
            context=context,
            scale_variation=scale_variation,
            context_cue_share=context_cue_share,
        )
        # The settings that differ from the defaults (also checks the lab factors at once).
        self.generator_args = self.spec.cache_args()
        self.root = root if root is not None else str(self.spec.cache_root(self.layout))

    @abstractmethod
    def write(self) -> None:
        """Write the dataset under ``root`` (a no-op when it is already there)."""

    def check_data(self) -> int:
        """Nothing to read: the data are generated (and cached) on first use.

        Returns:
            ``num_train``: the size of the train split it generates.
        """
        return self.spec.num_train

    def prepare_data(self) -> None:
        """Generate the dataset under ``root`` unless it is already there."""
        self.write()

    def setup(self, stage: str | None = None) -> None:
        # prepare_data runs only when a Trainer drives the module; make direct use work too.
        if _world()[1] == 1:
            self.prepare_data()
        super().setup(stage)


class SyntheticVOCDataModule(_SyntheticDataModule):
    """The built-in synthetic dataset (5 classes), generated into the VOC layout and read back
    through ``VOCSegmentationDataset``: the same code path real VOC takes.

    The data is generated in ``prepare_data`` (once; later runs reuse it). Splits are fixed:
    ``train``, and ``val`` for validation and test.

    Args:
        root: where to write it; ``None`` uses ``<cache>/synthetic_voc-<hash of the settings>``
            with ``<cache>`` = ``$SEGLIT_CACHE`` or ``~/.cache/seglit`` (other settings, lab
            factors included, give another folder).
        num_train: number of training images.
        num_val: number of validation images (also the test split).
        seed: generator seed (independent of the training seed).
        fine_structure: synthetic-lab factor in [0, 1] (0 = off): thin curves and cracks
            1-3 px wide, specks of 2-8 px, hollow objects and ragged edges, which only
            fine-resolution decoding draws (FCN-32s < FCN-8s < U-Net).
        context: synthetic-lab factor in [0, 1]: the share of objects that are ambiguous
            (the same grey blob for every class), whose class only the background colour of
            the whole image tells (receptive field, ASPP rates, image pooling).
        scale_variation: synthetic-lab factor in [0, 1]: object sizes from today's 25-60% of
            the short side (0) to log-uniform from 4 px to the whole short side (1).
        context_cue_share: with ``context`` on, the share in (0.5, 1] of the visible
            background in the cue class's colour family (default 0.65). At 1 the cue touches
            every object, so a small window around a pixel tells its class: the control that
            shows whether a context ablation's gain needs long-range context.
        min_size: smallest image side in pixels (larger images put the interior of the
            ``context`` objects further from the cue).
        max_size: largest image side in pixels.
        crop_size: training crop (images are ``min_size``..``max_size`` px a side).
        scale_range: range of the random training scale factor.
        num_workers: DataLoader worker processes.
        **kwargs: other settings of ``SegmentationDataModule``.

    The lab factors are described in ``seglit.data.synthetic_lab.LAB_FACTORS`` and
    ``docs/datasets.md`` ("The synthetic lab"); a recipe sets them as
    ``data.init_args.fine_structure: 1.0``.
    """

    layout = "voc"

    CLASSES = SYNTHETIC_CLASSES

    def build_dataset(self, stage: str, transform) -> Dataset:
        split = "train" if stage == "train" else "val"
        return VOCSegmentationDataset(self.root, split, transform, num_classes=self.num_classes)

    def write(self) -> None:  # noqa: D102
        write_synthetic_voc(self.root, self.spec)


class SyntheticFarCueDataModule(SyntheticVOCDataModule):
    """The synthetic lab's ``far_cue`` factor: grey boxes whose class only a band in the
    class's colour family tells, ``cue_distance`` px to their left or right (the ASPP rates'
    field of view on a shallow DeepLab, ``recipes/ablation_dilation.yaml --smoke``).

    A ``SyntheticVOCDataModule`` (same layout, reader and cache) with the factor's settings
    and defaults that keep its geometry: images of 120-128 px (every box and band fits),
    trained whole (128 px crops) and unscaled (a scale would move the band).

    Args:
        far_cue: share in [0, 1] of the objects that are far-cue boxes (0 = off: the
            ``SyntheticVOCDataModule`` data of the other arguments).
        cue_distance: gap in px between a box and its band (default 60: beyond the reach of
            ASPP rates (3, 6, 9) on ``backbone_stages: 1``, within that of (6, 12, 18) and
            (12, 24, 36); ``docs/datasets.md``). 2 is the control where the band touches the
            box.
        min_size: smallest image side in pixels.
        max_size: largest image side in pixels.
        crop_size: training crop.
        scale_range: range of the random training scale factor.
        **kwargs: the other arguments of ``SyntheticVOCDataModule``.
    """

    def __init__(
        self,
        far_cue: float = 1.0,
        cue_distance: int = FAR_CUE_DISTANCE,
        min_size: int = 120,
        max_size: int = 128,
        crop_size: int | tuple[int, int] = 128,
        scale_range: tuple[float, float] = (1.0, 1.0),
        **kwargs,
    ):
        super().__init__(
            min_size=min_size,
            max_size=max_size,
            crop_size=crop_size,
            scale_range=scale_range,
            **kwargs,
        )
        self.spec = replace(self.spec, far_cue=far_cue, cue_distance=cue_distance)
        self.generator_args = self.spec.cache_args()  # also checks the settings at once
        if kwargs.get("root") is None:
            self.root = str(self.spec.cache_root(self.layout))


class CityscapesDataModule(_SplitsDataModule):
    """Cityscapes fine annotations: 19 evaluated classes (trainIds), everything else 255.

    Args:
        root: folder holding ``leftImg8bit/`` and ``gtFine/`` (torchvision's ``Cityscapes``
            root).
        crop_size: training crop (the common 512x1024 by default).
        **kwargs: the splits (``train_split``, ``val_split``, ``test_split``: ``train``, ``val``,
            ``val``; the public test labels are empty) and the loader and augmentation settings
            of ``SegmentationDataModule``.
    """

    def __init__(self, root: str, *, crop_size: int | tuple[int, int] = (512, 1024), **kwargs):
        super().__init__(root, crop_size=crop_size, **kwargs)

    CLASSES = CITYSCAPES_CLASSES
    PALETTE = CITYSCAPES_PALETTE

    def build_dataset(self, stage: str, transform) -> Dataset:
        return CityscapesDataset(self.root, self.splits[stage], transform=transform)


class SyntheticCityscapesDataModule(_SyntheticDataModule):
    """The synthetic dataset in the Cityscapes layout (labelIds mapped to the 19 trainIds on
    the fly), read through ``CityscapesDataset``. Arguments as in ``SyntheticVOCDataModule``.
    """

    layout = "cityscapes"

    CLASSES = CITYSCAPES_CLASSES
    PALETTE = CITYSCAPES_PALETTE

    def build_dataset(self, stage: str, transform) -> Dataset:
        return CityscapesDataset(self.root, "train" if stage == "train" else "val", transform)

    def write(self) -> None:  # noqa: D102
        write_synthetic_cityscapes(self.root, self.spec)
