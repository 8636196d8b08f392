"""The built-in synthetic segmentation dataset, written to disk in the real Pascal VOC layout
(or the Cityscapes one) and cached.

The images and masks are drawn by ``seglit.data.synthetic_render`` (the shapes, textures and
the **synthetic lab** factors ``fine_structure``, ``context``, ``scale_variation`` and
``far_cue``, defined in ``seglit.data.synthetic_lab``: see ``LAB_FACTORS`` /
``describe_lab()``). This module writes them: JPEG images and palette PNG
masks (pixel value = class index, 255 = void band along object edges) exactly like VOC's
``SegmentationClass`` files, so the data is read by the same code that reads real VOC; or
Cityscapes ``leftImg8bit`` / ``gtFine`` labelIds. A ``SyntheticSpec``
(``seglit.data.synthetic_spec``) holds every setting the data is a pure function of; it also
names the cache folder (``SyntheticSpec.cache_root``).
Trees are built in a staging folder and moved in whole, with a marker file written last. With
every lab factor at 0 the output is bit for bit the original dataset (and the cache key is
unchanged).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from seglit.data.palette import flat_palette, voc_palette
from seglit.data.synthetic_lab import (
    _LAB_STREAM,
    _LAB_VERSIONS,
    CONTEXT_CUE_SHARE,
    FAR_CUE_DISTANCE,
    LAB_FACTORS,
    LabFactor,
    describe_lab,
    lab_params,
)
from seglit.data.synthetic_render import SYNTHETIC_CLASSES, render_sample
from seglit.data.synthetic_spec import SyntheticSpec, cache_dir

__all__ = [
    "CONTEXT_CUE_SHARE",
    "FAR_CUE_DISTANCE",
    "LAB_FACTORS",
    "MARKER_NAME",
    "SYNTHETIC_CITYSCAPES_IDS",
    "SYNTHETIC_CLASSES",
    "LabFactor",
    "SyntheticSpec",
    "cache_dir",
    "describe_lab",
    "lab_params",
    "render_sample",
    "write_synthetic_cityscapes",
    "write_synthetic_voc",
]

MARKER_NAME = "seglit_synthetic.json"
"""File written last inside ``VOCdevkit/VOC2012``: the generator's parameters (the cache key)."""

SYNTHETIC_CITYSCAPES_IDS: tuple[int, ...] = (7, 26, 11, 20, 21)
"""Cityscapes labelId written for each synthetic class: road, car, building, traffic sign,
vegetation (trainIds 0, 13, 2, 7, 8)."""

_CITIES = {"train": ("alpha", "bravo"), "val": ("charlie",)}


def _spec(spec: SyntheticSpec | None, settings: dict[str, Any], writer: str) -> SyntheticSpec:
    """``spec`` (or the default spec) with the keyword ``settings`` replaced."""
    if spec is None:
        spec = SyntheticSpec()
    elif not isinstance(spec, SyntheticSpec):
        raise TypeError(
            f"{writer}() takes the settings by keyword (num_train=...) or as a SyntheticSpec, "
            f"got {spec!r}"
        )
    return replace(spec, **settings) if settings else spec


def _render(spec: SyntheticSpec, index: int) -> tuple[np.ndarray, np.ndarray, np.random.Generator]:
    """Image ``index`` of ``spec`` as ``(image, label, rng)``; ``rng`` is the image's random
    generator after the drawing (the Cityscapes layout goes on drawing from it)."""
    rng = np.random.default_rng([spec.seed, index])
    lab_rng = np.random.default_rng([spec.seed, index, _LAB_STREAM])
    image, label = render_sample(rng, spec, lab_rng=lab_rng)
    return image, label, rng


def write_synthetic_voc(
    root: str | os.PathLike,
    spec: SyntheticSpec | None = None,
    *,
    overwrite: bool = False,
    **settings: Any,
) -> Path:
    """Write (or reuse) the synthetic dataset in the Pascal VOC 2012 layout under ``root``.

    Writes ``root/VOCdevkit/VOC2012/{JPEGImages/<id>.jpg, SegmentationClass/<id>.png,
    ImageSets/Segmentation/{train,val}.txt}``. The output is a pure function of the spec.
    A marker file holding the spec (``SyntheticSpec.marker``) is written last; a later call
    with the same spec returns at once without regenerating.

    Args:
        root: dataset root (the folder that holds ``VOCdevkit``; the same root
            ``VOCSegmentationDataset`` and torchvision's ``VOCSegmentation`` take).
        spec: the settings (``SyntheticSpec``; ``None``: the defaults).
        overwrite: replace an existing tree whose parameters differ (or that has no marker).
        **settings: ``SyntheticSpec`` fields that replace those of ``spec``, e.g.
            ``write_synthetic_voc(root, num_train=16, num_val=5, seed=0, context=1.0)``.

    With every lab factor at 0 the files are bit for bit those written before the lab existed
    and the marker holds no lab keys; non-zero factors are recorded in the marker.

    Returns:
        ``root`` as a ``Path``.

    Raises:
        ValueError: a setting is out of range.
        TypeError: ``settings`` names no field of ``SyntheticSpec``.
        FileExistsError: ``root`` already holds a VOC tree made with other parameters (or not
            made by this function) and ``overwrite`` is false.
    """
    spec = _spec(spec, settings, "write_synthetic_voc")
    spec.check()
    palette = flat_palette(voc_palette())

    def write(staging: Path) -> None:
        voc = staging / "VOCdevkit" / "VOC2012"
        for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
            (voc / sub).mkdir(parents=True)
        ids = [f"synth_{index:06d}" for index in range(spec.num_train + spec.num_val)]
        for index, image_id in enumerate(ids):
            image, label, _ = _render(spec, index)
            Image.fromarray(image).save(voc / "JPEGImages" / f"{image_id}.jpg", quality=92)
            mask = Image.fromarray(label, mode="P")
            mask.putpalette(palette)
            mask.save(voc / "SegmentationClass" / f"{image_id}.png")
        splits = voc / "ImageSets" / "Segmentation"
        (splits / "train.txt").write_text("".join(f"{i}\n" for i in ids[: spec.num_train]))
        (splits / "val.txt").write_text("".join(f"{i}\n" for i in ids[spec.num_train :]))

    _write_cached(
        Path(root),
        ("VOCdevkit",),
        Path("VOCdevkit/VOC2012") / MARKER_NAME,
        spec.marker("voc"),
        write,
        overwrite,
        "write_synthetic_voc",
    )
    return Path(root)


def write_synthetic_cityscapes(
    root: str | os.PathLike,
    spec: SyntheticSpec | None = None,
    *,
    overwrite: bool = False,
    **settings: Any,
) -> Path:
    """Write (or reuse) the synthetic dataset in the Cityscapes layout under ``root``.

    Writes ``root/leftImg8bit/{train,val}/<city>/<city>_000000_<n>_leftImg8bit.png`` and
    ``root/gtFine/{train,val}/<city>/<city>_000000_<n>_gtFine_labelIds.png`` (greyscale labelIds
    as Cityscapes distributes them). The synthetic classes become the labelIds of
    ``SYNTHETIC_CITYSCAPES_IDS``; void edges become ``unlabeled`` (0), and some images get an
    ``ego vehicle`` (1) strip and a ``parking`` (9) patch: ids the trainId mapping sends to 255.
    Arguments (spec and settings, lab factors included), caching and errors are as in
    ``write_synthetic_voc``.
    """
    spec = _spec(spec, settings, "write_synthetic_cityscapes")
    spec.check()
    lookup = np.zeros(256, dtype=np.uint8)  # 255 (void edge) -> 0 (unlabeled)
    lookup[: len(SYNTHETIC_CITYSCAPES_IDS)] = SYNTHETIC_CITYSCAPES_IDS

    def write(staging: Path) -> None:
        for index in range(spec.num_train + spec.num_val):
            split = "train" if index < spec.num_train else "val"
            city = _CITIES[split][index % len(_CITIES[split])]
            name = f"{city}_000000_{index:06d}"
            image, label, rng = _render(spec, index)
            label_ids = lookup[label]
            if rng.random() < 0.5:  # ego vehicle: a dark strip along the bottom
                rows = int(rng.integers(3, 9))
                label_ids[-rows:] = 1
                image[-rows:] = 30
            if rng.random() < 0.5:  # a parking patch painted over the background
                h, w = label_ids.shape
                y, x = int(rng.integers(0, h - 8)), int(rng.integers(0, w - 8))
                patch = label_ids[y : y + 8, x : x + 8]
                patch[patch == SYNTHETIC_CITYSCAPES_IDS[0]] = 9
            for top, data, suffix in (
                ("leftImg8bit", Image.fromarray(image), "leftImg8bit"),
                ("gtFine", Image.fromarray(label_ids, mode="L"), "gtFine_labelIds"),
            ):
                folder = staging / top / split / city
                folder.mkdir(parents=True, exist_ok=True)
                data.save(folder / f"{name}_{suffix}.png")

    _write_cached(
        Path(root),
        ("leftImg8bit", "gtFine"),
        Path("gtFine") / MARKER_NAME,
        spec.marker("cityscapes"),
        write,
        overwrite,
        "write_synthetic_cityscapes",
    )
    return Path(root)


def _stale(existing: object, params: dict) -> bool:
    """Whether a marker records the same arguments as ``params`` drawn by an earlier design of
    a lab factor (a cache seglit wrote and may regenerate)."""
    if not isinstance(existing, dict):
        return False

    def arguments(marker: dict) -> dict:
        return {k: v for k, v in marker.items() if k not in _LAB_VERSION_KEYS}

    return arguments(existing) == arguments(params) and existing != params


_LAB_VERSION_KEYS = frozenset(f"{name}_version" for name in _LAB_VERSIONS)


def _write_cached(
    root: Path,
    top_dirs: tuple[str, ...],
    marker: Path,
    params: dict,
    write: Callable[[Path], None],
    overwrite: bool,
    writer: str,
) -> None:
    """Run ``write(staging)`` unless ``root/marker`` already records ``params``.

    The tree is built in a staging folder next to its final place and its ``top_dirs`` are
    moved in whole, so an interrupted run never leaves a half-written dataset that looks
    complete. The marker (the parameters) is written last.
    """
    from filelock import FileLock

    root.mkdir(parents=True, exist_ok=True)
    # one writer at a time: variants started side by side generate the same cache, and the
    # second must find the first's tree (never move its own over a tree another one reads)
    # (beside the root, not in it: the tree holds only the dataset)
    with FileLock(str(root.parent / f".{root.name}.synthetic.lock")):
        marker_path = root / marker
        if marker_path.is_file():
            try:
                existing = json.loads(marker_path.read_text())
            except ValueError:
                existing = None
            if existing == params:
                return
            if not overwrite and not _stale(existing, params):
                raise FileExistsError(
                    f"{marker_path} records a synthetic dataset made with {existing}, not "
                    f"{params}; pass overwrite=True or use another root"
                )
        else:
            present = [root / d for d in top_dirs if (root / d).exists()]
            if present and not overwrite:
                raise FileExistsError(
                    f"{present[0]} exists but was not written by {writer} (no {marker}); "
                    "refusing to overwrite it: pass overwrite=True or use another root"
                )
        _remove_abandoned_staging(root)
        staging = Path(tempfile.mkdtemp(prefix=f".synthetic-{os.getpid()}-", dir=root))
        try:
            write(staging)
            (staging / marker).parent.mkdir(parents=True, exist_ok=True)
            (staging / marker).write_text(json.dumps(params, indent=2) + "\n")
            for name in top_dirs:
                if (root / name).exists():
                    shutil.rmtree(root / name)
                os.replace(staging / name, root / name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def _remove_abandoned_staging(root: Path) -> None:
    """Delete staging folders left by generations that were killed (their process is gone)."""
    for folder in root.glob(".synthetic-*"):
        pid = folder.name.split("-")[1]
        if not pid.isdigit() or not _process_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
