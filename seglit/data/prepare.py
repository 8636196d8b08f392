"""Fetch, convert, verify and check datasets: the logic behind ``python -m seglit.data``.

Every function returns plain values or raises an error with a one-line message; the command
line in ``seglit.data.__main__`` only prints them.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

from PIL import Image

from seglit.data.cityscapes import CityscapesDataset, label_ids_to_train_ids
from seglit.data.io import read_label, read_split_file
from seglit.data.palette import flat_palette, voc_palette
from seglit.data.voc import (
    AUG_MASK_DIR,
    SBD_DIR,
    VOC_CLASSES,
    VOCSegmentationDataset,
    read_sbd_mat,
    voc_dir,
)
from seglit.io import atomic_file, atomic_write_text

VOC_URL = "http://host.robots.ox.ac.uk/pascal/VOC/voc2012/VOCtrainval_11-May-2012.tar"
VOC_MD5 = "6cd6e144f989b92b3379bac3b3de84fd"
SBD_URL = (
    "http://www.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/semantic_contours/"
    "benchmark.tgz"
)
SBD_MD5 = "82b4d87ceb2ed10f6038a1cba92111cb"

VOC_SPLIT_SIZES = {"train": 1464, "val": 1449}
TRAINAUG_SIZE = 10582
CITYSCAPES_SPLIT_SIZES = {"train": 2975, "val": 500, "test": 1525}

CITYSCAPES_HOWTO = (
    "Cityscapes needs a (free) account: register at https://www.cityscapes-dataset.com, "
    "download gtFine_trainvaltest.zip and leftImg8bit_trainvaltest.zip, and unzip both into "
    "ROOT so that ROOT/leftImg8bit and ROOT/gtFine exist"
)


# ----- VOC and SBD -----------------------------------------------------------------------------


def verify_voc(root: str | os.PathLike) -> list[str]:
    """Problems with a real VOC 2012 tree: split sizes and files listed but missing."""
    problems = []
    base = voc_dir(root)
    if not base.is_dir():
        return [
            f"{base} not found: unpack VOCtrainval_11-May-2012.tar into {root} or add --download"
        ]
    for split, expected in VOC_SPLIT_SIZES.items():
        try:
            ids = read_split_file(base / "ImageSets" / "Segmentation" / f"{split}.txt")
        except (FileNotFoundError, ValueError) as err:
            problems.append(str(err))
            continue
        if len(ids) != expected:
            problems.append(f"split {split} lists {len(ids)} ids, expected {expected}")
        for image_id in ids:
            for path in (
                base / "JPEGImages" / f"{image_id}.jpg",
                base / "SegmentationClass" / f"{image_id}.png",
            ):
                if not path.is_file():
                    problems.append(f"{path}: missing")
    return problems


def sbd_split(root: str | os.PathLike, split: str) -> list[str]:
    """Ids of an SBD split (``train`` or ``val``) from ``benchmark_RELEASE/dataset/<split>.txt``."""
    return read_split_file(Path(root) / SBD_DIR / f"{split}.txt")


def _save_png(image: Image.Image, target: Path) -> None:
    """Write a PNG in one step: the converters keep the files that exist, so an interrupted
    conversion must leave no half-written mask behind for the next run to keep."""
    with atomic_file(target, "wb") as handle:
        image.save(handle, format="PNG")


def convert_sbd(root: str | os.PathLike) -> int:
    """Convert every SBD ``cls/*.mat`` to a VOC palette PNG in ``VOC2012/SegmentationClassAug``.

    Returns:
        The number of masks written (existing PNGs are kept).

    Raises:
        FileNotFoundError: there is no ``benchmark_RELEASE/dataset/cls`` folder.
    """
    cls_dir = Path(root) / SBD_DIR / "cls"
    if not cls_dir.is_dir():
        raise FileNotFoundError(
            f"SBD folder {cls_dir} not found: unpack benchmark.tgz into {root} "
            "(or run: python -m seglit.data prepare sbd --root ROOT --download)"
        )
    out_dir = voc_dir(root) / AUG_MASK_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    palette = flat_palette(voc_palette())
    written = 0
    for mat in sorted(cls_dir.glob("*.mat")):
        target = out_dir / f"{mat.stem}.png"
        if target.is_file():
            continue
        mask = Image.fromarray(read_sbd_mat(mat), mode="P")
        mask.putpalette(palette)
        _save_png(mask, target)
        written += 1
    return written


def make_trainaug(root: str | os.PathLike) -> list[str]:
    """Write ``ImageSets/Segmentation/trainaug.txt``: VOC train + SBD train + SBD val - VOC val.

    Returns:
        The sorted ids (10,582 for the real datasets).
    """
    splits = voc_dir(root) / "ImageSets" / "Segmentation"
    voc_train = set(read_split_file(splits / "train.txt"))
    voc_val = set(read_split_file(splits / "val.txt"))
    sbd = set(sbd_split(root, "train")) | set(sbd_split(root, "val"))
    ids = sorted((voc_train | sbd) - voc_val)
    atomic_write_text(splits / "trainaug.txt", "".join(f"{i}\n" for i in ids))
    return ids


# ----- Cityscapes ------------------------------------------------------------------------------


def convert_cityscapes(root: str | os.PathLike) -> int:
    """Write ``*_gtFine_labelTrainIds.png`` next to every ``*_gtFine_labelIds.png``.

    Returns:
        The number of files written (existing ones are kept).
    """
    gt = Path(root) / "gtFine"
    if not gt.is_dir():
        raise FileNotFoundError(f"{gt} not found. {CITYSCAPES_HOWTO.replace('ROOT', str(root))}")
    written = 0
    for label_ids in sorted(gt.glob("*/*/*_gtFine_labelIds.png")):
        target = label_ids.with_name(label_ids.name.replace("_labelIds.png", "_labelTrainIds.png"))
        if target.is_file():
            continue
        _save_png(Image.fromarray(label_ids_to_train_ids(read_label(label_ids)), mode="L"), target)
        written += 1
    return written


def verify_cityscapes(root: str | os.PathLike) -> list[str]:
    """Problems with a real Cityscapes tree: image counts per split."""
    problems = []
    for split, expected in CITYSCAPES_SPLIT_SIZES.items():
        found = len(list((Path(root) / "leftImg8bit" / split).glob("*/*_leftImg8bit.png")))
        if found != expected:
            problems.append(f"leftImg8bit/{split} holds {found} images, expected {expected}")
    return problems


# ----- check: read every sample ----------------------------------------------------------------


def _voc_datasets(root: Path, num_classes: int) -> Iterator[tuple[str, Callable]]:
    splits = voc_dir(root) / "ImageSets" / "Segmentation"
    if not voc_dir(root).is_dir():
        yield "root", lambda: VOCSegmentationDataset(root, "train", num_classes=num_classes)
        return
    names = sorted(p.stem for p in splits.glob("*.txt")) or ["train", "val"]
    for required in ("train", "val"):
        if required not in names:
            names.append(required)
    for split in names:
        yield split, lambda s=split: VOCSegmentationDataset(root, s, num_classes=num_classes)


def _cityscapes_datasets(root: Path) -> Iterator[tuple[str, Callable]]:
    found = sorted(p.name for p in (root / "leftImg8bit").glob("*") if p.is_dir())
    for split in sorted(set(found) | {"train", "val"}):
        yield split, lambda s=split: CityscapesDataset(root, s)


def check_dataset(
    kind: str, root: str | os.PathLike, num_classes: int | None = None
) -> tuple[dict[str, int], list[str]]:
    """Read every sample of every split and collect the problems.

    Args:
        kind: ``voc`` or ``cityscapes``.
        root: dataset root.
        num_classes: VOC only: number of classes (21 by default).

    Returns:
        ``(samples read per split, problems)``, each problem a line naming the file.
    """
    root = Path(root)
    if kind == "voc":
        datasets = _voc_datasets(root, num_classes or len(VOC_CLASSES))
    elif kind == "cityscapes":
        datasets = _cityscapes_datasets(root)
    else:
        raise ValueError(f"unknown dataset {kind!r}: expected voc or cityscapes")
    counts: dict[str, int] = {}
    problems: list[str] = []
    for split, build in datasets:
        try:
            dataset = build()
        except (FileNotFoundError, ValueError) as err:
            problems.append(f"{split}: {err}")
            continue
        counts[split] = 0
        for index in range(len(dataset)):
            try:
                dataset.read(index)
                counts[split] += 1
            except (FileNotFoundError, ValueError) as err:
                problems.append(f"{split}: {err}")
    return counts, problems
