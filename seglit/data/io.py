"""Reading images, label maps and split files, with errors that name the offending file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from seglit import IGNORE_INDEX

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
"""File suffixes read as images from a folder (``seglit predict``, ``python -m seglit.predict``)."""

LABEL_MODES = ("P", "L")
"""PIL modes a label map may have: palette (VOC, Cityscapes colour-free PNGs) or greyscale."""


def read_split_file(path: Path) -> list[str]:
    """Read a split file (one sample id per line, blank lines ignored).

    Raises:
        FileNotFoundError: the file does not exist (the message lists the splits that do).
        ValueError: the file lists no ids.
    """
    if not path.is_file():
        available = sorted(p.stem for p in path.parent.glob("*.txt"))
        raise FileNotFoundError(
            f"split file {path} not found (available splits in {path.parent}: "
            f"{', '.join(available) or 'none'})"
        )
    ids = [line.strip().split()[0] for line in path.read_text().splitlines() if line.strip()]
    if not ids:
        raise ValueError(f"split file {path} is empty: expected one sample id per line")
    return ids


def read_image(path: Path) -> np.ndarray:
    """Read an RGB image as a uint8 array of shape (H, W, 3).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is corrupt or truncated.
    """
    try:
        with Image.open(path) as img:
            img.load()
            # Skip convert() for RGB files (most JPEGs): it would only copy the pixels.
            return np.asarray(img if img.mode == "RGB" else img.convert("RGB"))
    except FileNotFoundError:
        raise
    except (OSError, SyntaxError, ValueError) as err:
        raise ValueError(f"cannot read image {path} (corrupt or truncated?): {err}") from err


def read_label(path: Path) -> np.ndarray:
    """Read a label map as a uint8 array of shape (H, W) holding the stored indices.

    Palette ("P") PNGs are read as their palette indices, never through RGB, so the values are
    the class indices the annotators stored (VOC: 0..20 and 255).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file is unreadable, or is a colour (RGB/RGBA) image where a palette or
            greyscale label map belongs.
    """
    try:
        with Image.open(path) as img:
            if img.mode.startswith("I"):
                raise ValueError(
                    f"label map {path} is a {img.mode!r} (16/32-bit integer) image: expected "
                    "an 8-bit palette ('P') or greyscale ('L') PNG of class indices; save the "
                    "class indices as 8-bit (values 0..254, 255 for void)"
                )
            if img.mode not in LABEL_MODES:
                raise ValueError(
                    f"label map {path} has mode {img.mode!r}: expected a palette ('P') or "
                    "greyscale ('L') PNG of class indices, not a colour image (was it saved "
                    "after converting to RGB?)"
                )
            label = np.array(img)
    except FileNotFoundError:
        raise
    except (OSError, SyntaxError) as err:
        raise ValueError(f"cannot read label map {path} (corrupt or truncated?): {err}") from err
    return label.astype(np.uint8, copy=False)


def check_label_values(label: np.ndarray, num_classes: int, path: Path) -> None:
    """Raise ``ValueError`` naming ``path`` if ``label`` holds values other than 0..C-1 and 255."""
    bad = (label >= num_classes) & (label != IGNORE_INDEX)
    if bad.any():
        values = sorted(int(v) for v in np.unique(label[bad]))
        raise ValueError(
            f"label map {path} holds values {values[:10]} outside the {num_classes} classes "
            f"(expected 0..{num_classes - 1} and {IGNORE_INDEX} for void)"
        )


def check_same_size(image: np.ndarray, label: np.ndarray, image_path: Path, label_path: Path):
    """Raise ``ValueError`` if an image and its label map differ in height or width."""
    if image.shape[:2] != label.shape[:2]:
        raise ValueError(
            f"image {image_path} is {image.shape[1]}x{image.shape[0]} but its label map "
            f"{label_path} is {label.shape[1]}x{label.shape[0]} (width x height): they must match"
        )
