"""A built-in synthetic segmentation dataset written to disk in the real Pascal VOC layout.

Each image shows a few textured, coloured shapes (discs, boxes, triangles, blobs) on a noisy,
low-saturation background. Every class has its own hue and texture, so a small network learns
it in well under a minute of CPU, while the shapes, occlusions, noise, JPEG artefacts and odd
image sizes still exercise everything a real pipeline has to get right. Masks are palette PNGs
(pixel value = class index, 255 = void band along object edges) exactly like VOC's
``SegmentationClass`` files, so the data is read by the same code that reads real VOC.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from seglit.data.palette import flat_palette, voc_palette

SYNTHETIC_CLASSES: tuple[str, ...] = ("background", "disc", "box", "triangle", "blob")
"""Class names of the synthetic dataset; the label value is the index in this tuple."""

MARKER_NAME = "seglit_synthetic.json"
"""File written last inside ``VOCdevkit/VOC2012``: the generator's parameters (the cache key)."""

_FORMAT_VERSION = 1

SYNTHETIC_CITYSCAPES_IDS: tuple[int, ...] = (7, 26, 11, 20, 21)
"""Cityscapes labelId written for each synthetic class: road, car, building, traffic sign,
vegetation (trainIds 0, 13, 2, 7, 8)."""

_CITIES = {"train": ("alpha", "bravo"), "val": ("charlie",)}

# Base colour of each foreground class (well apart in hue; the background is low-saturation).
_CLASS_COLOURS = {
    1: (215, 45, 40),  # disc: red
    2: (40, 190, 60),  # box: green
    3: (45, 85, 225),  # triangle: blue
    4: (230, 195, 35),  # blob: yellow
}


def write_synthetic_voc(
    root: str | os.PathLike,
    num_train: int = 160,
    num_val: int = 40,
    seed: int = 0,
    min_size: int = 57,
    max_size: int = 131,
    max_objects: int = 4,
    void_width: int = 1,
    overwrite: bool = False,
) -> Path:
    """Write (or reuse) the synthetic dataset in the Pascal VOC 2012 layout under ``root``.

    Writes ``root/VOCdevkit/VOC2012/{JPEGImages/<id>.jpg, SegmentationClass/<id>.png,
    ImageSets/Segmentation/{train,val}.txt}``. The output is a pure function of the arguments.
    A marker file holding the arguments is written last; a later call with the same arguments
    returns at once without regenerating.

    Args:
        root: dataset root (the folder that holds ``VOCdevkit``; the same root
            ``VOCSegmentationDataset`` and torchvision's ``VOCSegmentation`` take).
        num_train: number of training images.
        num_val: number of validation images.
        seed: random seed; image ``i`` depends only on ``(seed, i)`` and the size arguments.
        min_size: smallest image side in pixels.
        max_size: largest image side in pixels.
        max_objects: most shapes per image (each image has at least one).
        void_width: half-width in pixels of the 255 band along object boundaries (0: none).
        overwrite: replace an existing tree whose parameters differ (or that has no marker).

    Returns:
        ``root`` as a ``Path``.

    Raises:
        ValueError: an argument is out of range.
        FileExistsError: ``root`` already holds a VOC tree made with other parameters (or not
            made by this function) and ``overwrite`` is false.
    """
    _check_args(num_train, num_val, min_size, max_size, max_objects, void_width)
    params = {
        "format_version": _FORMAT_VERSION,
        "num_train": num_train,
        "num_val": num_val,
        "seed": seed,
        "min_size": min_size,
        "max_size": max_size,
        "max_objects": max_objects,
        "void_width": void_width,
    }
    palette = flat_palette(voc_palette())

    def write(staging: Path) -> None:
        voc = staging / "VOCdevkit" / "VOC2012"
        for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
            (voc / sub).mkdir(parents=True)
        ids = [f"synth_{index:06d}" for index in range(num_train + num_val)]
        for index, image_id in enumerate(ids):
            image, label = render_sample(
                np.random.default_rng([seed, index]), min_size, max_size, max_objects, void_width
            )
            Image.fromarray(image).save(voc / "JPEGImages" / f"{image_id}.jpg", quality=92)
            mask = Image.fromarray(label, mode="P")
            mask.putpalette(palette)
            mask.save(voc / "SegmentationClass" / f"{image_id}.png")
        splits = voc / "ImageSets" / "Segmentation"
        (splits / "train.txt").write_text("".join(f"{i}\n" for i in ids[:num_train]))
        (splits / "val.txt").write_text("".join(f"{i}\n" for i in ids[num_train:]))

    _write_cached(
        Path(root),
        ("VOCdevkit",),
        Path("VOCdevkit/VOC2012") / MARKER_NAME,
        params,
        write,
        overwrite,
        "write_synthetic_voc",
    )
    return Path(root)


def write_synthetic_cityscapes(
    root: str | os.PathLike,
    num_train: int = 160,
    num_val: int = 40,
    seed: int = 0,
    min_size: int = 57,
    max_size: int = 131,
    max_objects: int = 4,
    void_width: int = 1,
    overwrite: bool = False,
) -> Path:
    """Write (or reuse) the synthetic dataset in the Cityscapes layout under ``root``.

    Writes ``root/leftImg8bit/{train,val}/<city>/<city>_000000_<n>_leftImg8bit.png`` and
    ``root/gtFine/{train,val}/<city>/<city>_000000_<n>_gtFine_labelIds.png`` (greyscale labelIds
    as Cityscapes distributes them). The synthetic classes become the labelIds of
    ``SYNTHETIC_CITYSCAPES_IDS``; void edges become ``unlabeled`` (0), and some images get an
    ``ego vehicle`` (1) strip and a ``parking`` (9) patch: ids the trainId mapping sends to 255.
    Arguments, caching and errors are as in ``write_synthetic_voc``.
    """
    _check_args(num_train, num_val, min_size, max_size, max_objects, void_width)
    params = {
        "format_version": _FORMAT_VERSION,
        "layout": "cityscapes",
        "num_train": num_train,
        "num_val": num_val,
        "seed": seed,
        "min_size": min_size,
        "max_size": max_size,
        "max_objects": max_objects,
        "void_width": void_width,
    }
    lookup = np.zeros(256, dtype=np.uint8)  # 255 (void edge) -> 0 (unlabeled)
    lookup[: len(SYNTHETIC_CITYSCAPES_IDS)] = SYNTHETIC_CITYSCAPES_IDS

    def write(staging: Path) -> None:
        for index in range(num_train + num_val):
            split = "train" if index < num_train else "val"
            city = _CITIES[split][index % len(_CITIES[split])]
            name = f"{city}_000000_{index:06d}"
            rng = np.random.default_rng([seed, index])
            image, label = render_sample(rng, min_size, max_size, max_objects, void_width)
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
        params,
        write,
        overwrite,
        "write_synthetic_cityscapes",
    )
    return Path(root)


def _check_args(num_train, num_val, min_size, max_size, max_objects, void_width) -> None:
    if num_train < 1 or num_val < 1:
        raise ValueError(f"num_train and num_val must be >= 1, got {num_train} and {num_val}")
    if not 16 <= min_size <= max_size:
        raise ValueError(f"need 16 <= min_size <= max_size, got {min_size} and {max_size}")
    if max_objects < 1:
        raise ValueError(f"max_objects must be >= 1, got {max_objects}")
    if void_width < 0:
        raise ValueError(f"void_width must be >= 0, got {void_width}")


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
    marker_path = root / marker
    if marker_path.is_file():
        try:
            existing = json.loads(marker_path.read_text())
        except ValueError:
            existing = None
        if existing == params:
            return
        if not overwrite:
            raise FileExistsError(
                f"{marker_path} records a synthetic dataset made with {existing}, not {params}; "
                "pass overwrite=True or use another root"
            )
    else:
        present = [root / d for d in top_dirs if (root / d).exists()]
        if present and not overwrite:
            raise FileExistsError(
                f"{present[0]} exists but was not written by {writer} (no {marker}); "
                "refusing to overwrite it: pass overwrite=True or use another root"
            )
    root.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".synthetic-", dir=root))
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


def render_sample(
    rng: np.random.Generator,
    min_size: int = 57,
    max_size: int = 131,
    max_objects: int = 4,
    void_width: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """Render one synthetic image and its label map.

    Args:
        rng: source of randomness (the sample is a pure function of its state).
        min_size: smallest image side.
        max_size: largest image side.
        max_objects: most shapes in the image.
        void_width: half-width of the 255 band along label boundaries (0: no band).

    Returns:
        ``(image, label)``: uint8 arrays of shapes (H, W, 3) and (H, W); label values are class
        indices into ``SYNTHETIC_CLASSES`` or 255.
    """
    height, width = (int(v) for v in rng.integers(min_size, max_size + 1, size=2))
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    image = _background(rng, height, width, yy, xx)
    label = np.zeros((height, width), dtype=np.uint8)

    num_objects = int(rng.integers(1, max_objects + 1))
    short = min(height, width)
    for _ in range(num_objects):
        class_index = int(rng.integers(1, len(SYNTHETIC_CLASSES)))
        size = float(rng.uniform(0.25, 0.6)) * short
        cy, cx = rng.uniform(0.1, 0.9) * height, rng.uniform(0.1, 0.9) * width
        shape = _shape_mask(rng, class_index, height, width, cy, cx, size)
        if not shape.any():
            continue
        texture = _texture(rng, class_index, yy, xx, cy, cx)
        image[shape] = texture[shape]
        label[shape] = class_index

    image += rng.normal(0.0, 8.0, size=image.shape).astype(np.float32)
    image = np.clip(image, 0, 255).astype(np.uint8)
    if void_width > 0:
        size = 2 * void_width + 1
        edge = ndimage.grey_dilation(label, size=size) != ndimage.grey_erosion(label, size=size)
        label[edge] = 255
    return image, label


def _background(
    rng: np.random.Generator, height: int, width: int, yy: np.ndarray, xx: np.ndarray
) -> np.ndarray:
    """A low-saturation background: grey level, faint tint, linear gradient and soft lines."""
    level = rng.uniform(70, 190)
    tint = rng.uniform(-12, 12, size=3)
    angle = rng.uniform(0, 2 * np.pi)
    ramp = (np.cos(angle) * xx / width + np.sin(angle) * yy / height) * rng.uniform(-40, 40)
    period = rng.uniform(6, 20)
    lines = 10.0 * np.sin(2 * np.pi * (xx * np.cos(angle + 1) + yy * np.sin(angle + 1)) / period)
    grey = level + ramp + lines
    return grey[..., None] + tint[None, None, :].astype(np.float32)


def _shape_mask(
    rng: np.random.Generator,
    class_index: int,
    height: int,
    width: int,
    cy: float,
    cx: float,
    size: float,
) -> np.ndarray:
    """Boolean mask of one shape: disc, box, triangle or blob according to the class."""
    canvas = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(canvas)
    r = size / 2
    if class_index == 1:  # disc (slightly elliptic)
        ry = r * rng.uniform(0.8, 1.2)
        draw.ellipse([cx - r, cy - ry, cx + r, cy + ry], fill=1)
    elif class_index == 2:  # box (axis-aligned, random aspect)
        ry = r * rng.uniform(0.6, 1.4)
        draw.rectangle([cx - r, cy - ry, cx + r, cy + ry], fill=1)
    elif class_index == 3:  # triangle (random rotation)
        theta = rng.uniform(0, 2 * np.pi) + np.array([0, 2 * np.pi / 3, 4 * np.pi / 3])
        points = [(cx + 1.2 * r * np.cos(t), cy + 1.2 * r * np.sin(t)) for t in theta]
        draw.polygon(points, fill=1)
    else:  # blob: a star-shaped polygon with a smooth random radius
        n = 16
        theta = np.linspace(0, 2 * np.pi, n, endpoint=False)
        radius = r * (1 + 0.3 * np.sin(theta * rng.integers(2, 4) + rng.uniform(0, 6)))
        radius *= rng.uniform(0.8, 1.1, size=n)
        points = [(cx + q * np.cos(t), cy + q * np.sin(t)) for q, t in zip(radius, theta)]
        draw.polygon(points, fill=1)
    return np.asarray(canvas, dtype=bool)


def _texture(
    rng: np.random.Generator,
    class_index: int,
    yy: np.ndarray,
    xx: np.ndarray,
    cy: float,
    cx: float,
) -> np.ndarray:
    """The class's colour (jittered per object) modulated by the class's own texture."""
    colour = np.array(_CLASS_COLOURS[class_index], dtype=np.float32) + rng.uniform(-20, 20, 3)
    period = rng.uniform(5, 9)
    if class_index == 1:  # concentric rings
        pattern = np.sin(2 * np.pi * np.hypot(yy - cy, xx - cx) / period)
    elif class_index == 2:  # stripes
        pattern = np.sign(np.sin(2 * np.pi * (xx + yy) / period))
    elif class_index == 3:  # checkerboard
        pattern = np.sign(np.sin(2 * np.pi * xx / period) * np.sin(2 * np.pi * yy / period))
    else:  # spots
        pattern = np.cos(2 * np.pi * xx / period) * np.cos(2 * np.pi * yy / period)
    shade = 1.0 + 0.15 * pattern.astype(np.float32)
    return np.clip(colour[None, None, :] * shade[..., None], 0, 255).astype(np.float32)
