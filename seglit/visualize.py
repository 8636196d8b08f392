"""Label maps into pictures: palette PNGs, overlays with a legend, comparison panels.

Everything here works on numpy arrays and PIL images: uint8 RGB images ``(H, W, 3)`` and
integer label maps ``(H, W)`` (class index, 255 = void). Neither torch nor Lightning is
imported, so light command-line tools can use this module; :func:`denormalize` accepts torch
tensors by duck typing.

* :func:`palette_image`: a label map as a mode-"P" PNG (the VOC ``SegmentationClass`` format).
* :func:`overlay`: the image with the predicted non-background classes tinted in their colour;
  background and void pixels stay exactly as they are.
* :func:`legend_below` / :func:`legend_strip`: a swatch and the name of every class
  present, beside the picture (never over it).
* :func:`comparison_panel`: image | ground truth | prediction | errors, with titles.
* :func:`write_prediction_files`: the one writer of a prediction's mask and overlay.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from seglit import IGNORE_INDEX
from seglit.io import atomic_file

Palette = Sequence[tuple[int, int, int]]
"""One ``(r, g, b)`` colour per class index."""

BACKGROUND = 0
"""Class index left untinted by :func:`overlay` (class 0 is background in VOC and the
synthetic data)."""

ERROR_COLOUR = (255, 0, 0)
"""Wrong pixels in the errors tile."""

VOID_COLOUR = (128, 128, 128)
"""Void (ignored) pixels in the errors tile."""

CORRECT_DIM = 0.4
"""Brightness factor of correct pixels in the errors tile."""

TITLE_HEIGHT = 18
"""Height in pixels of the title bar above each tile of :func:`comparison_panel`."""

TILE_GAP = 4
"""White gap in pixels between the tiles of :func:`comparison_panel`."""

PANEL_TITLES = ("image", "ground truth", "prediction", "errors")


def denormalize(
    images: Any, mean: Sequence[float] | None = None, std: Sequence[float] | None = None
) -> np.ndarray:
    """Turn normalized images back into uint8 RGB, channels last.

    Inverts ``Normalize(mean, std)`` as the datamodules apply it
    (``normalized = (pixel / 255 - mean) / std``).

    Args:
        images: Normalized images ``(3, H, W)`` or ``(N, 3, H, W)``: a numpy array or a torch
            tensor (any device or float dtype).
        mean: Per-channel normalization mean (0..1 scale). Without ``mean`` and ``std`` each
            image is min-max scaled instead.
        std: Per-channel normalization std (0..1 scale).

    Returns:
        uint8 ``(H, W, 3)`` or ``(N, H, W, 3)``.

    Raises:
        ValueError: The images are not ``(3, H, W)`` / ``(N, 3, H, W)``, or only one of
            ``mean`` and ``std`` is given.
    """
    if hasattr(images, "detach"):  # a torch tensor; torch itself is never imported here
        images = images.detach().float().cpu().numpy()
    x = np.asarray(images, dtype=np.float32)
    if x.ndim not in (3, 4) or x.shape[-3] != 3:
        raise ValueError(f"expected (3, H, W) or (N, 3, H, W) images, got shape {x.shape}")
    if (mean is None) != (std is None):
        raise ValueError("give both mean and std, or neither (min-max scaling)")
    if mean is not None:
        x = x * np.asarray(std, np.float32).reshape(3, 1, 1)
        x = x + np.asarray(mean, np.float32).reshape(3, 1, 1)
    else:
        low = x.min(axis=(-3, -2, -1), keepdims=True)
        high = x.max(axis=(-3, -2, -1), keepdims=True)
        x = (x - low) / np.maximum(high - low, 1e-8)
    x = np.clip(np.rint(x * 255.0), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(np.moveaxis(x, -3, -1))


def palette_image(label_map: np.ndarray, palette: Palette) -> Image.Image:
    """A mode-"P" PNG image whose pixel values are class indices, coloured by ``palette``.

    Args:
        label_map: ``(H, W)`` class indices (0..255).
        palette: Colour of each class index; missing entries are black.
    """
    image = Image.fromarray(np.asarray(label_map).astype(np.uint8))  # mode "L"
    image.putpalette(_colour_table(palette).reshape(-1).tolist())  # makes it mode "P"
    return image


def present_classes(
    label_map: np.ndarray, background: int = BACKGROUND, ignore_index: int = IGNORE_INDEX
) -> list[int]:
    """The class indices in ``label_map``, ascending, without background and void."""
    return [int(c) for c in np.unique(label_map) if c not in (background, ignore_index)]


def overlay(
    image: np.ndarray,
    label_map: np.ndarray,
    palette: Palette,
    alpha: float = 0.5,
    background: int = BACKGROUND,
    ignore_index: int = IGNORE_INDEX,
    contour: bool = True,
) -> np.ndarray:
    """Tint the labelled pixels of an image in their class colour.

    Only pixels of a class other than ``background`` and ``ignore_index`` change: they become
    ``(1 - alpha) * image + alpha * colour``, and, with ``contour``, the pixels on a class
    boundary take the full class colour. Background and void pixels are left byte-identical.

    Args:
        image: uint8 RGB ``(H, W, 3)``.
        label_map: ``(H, W)`` class indices (a prediction or a ground truth).
        palette: Colour of each class index.
        alpha: Opacity of the class colour (0 leaves the image as it is, except contours).
        background: Class left untinted.
        ignore_index: Void label, left untinted.
        contour: Outline every coloured region with a 1-pixel line of its full colour.

    Returns:
        A new uint8 ``(H, W, 3)`` array.

    Raises:
        ValueError: Shapes do not match, or a class has no colour in ``palette``.
    """
    rgb = _check_rgb(image)
    labels = np.asarray(label_map)
    if labels.shape != rgb.shape[:2]:
        raise ValueError(f"label map {labels.shape} does not match image {rgb.shape[:2]}")
    tinted = (labels != background) & (labels != ignore_index)
    classes = labels[tinted]
    if classes.size and int(classes.max()) >= len(palette):
        raise ValueError(f"class {int(classes.max())} has no colour in a {len(palette)}-palette")
    colours = _colour_table(palette).astype(np.float32)
    out = rgb.copy()
    blended = (1.0 - alpha) * rgb[tinted].astype(np.float32) + alpha * colours[classes]
    out[tinted] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    if contour:
        edge = _boundaries(labels) & tinted
        out[edge] = colours[labels[edge]].astype(np.uint8)
    return out


def legend_strip(
    label_maps: Sequence[np.ndarray],
    class_names: Sequence[str],
    palette: Palette,
    width: int,
    background: int = BACKGROUND,
    ignore_index: int = IGNORE_INDEX,
) -> np.ndarray:
    """A legend to put beside a picture, never over it: every class present in any of
    ``label_maps`` (ascending index, background and void left out) as a swatch and its name,
    laid out left to right on white and wrapped into as many rows as ``width`` needs.

    Args:
        label_maps: ``(H, W)`` class indices (e.g. the ground truth and the prediction).
        class_names: Name of each class index (indices beyond it are written as numbers).
        palette: Colour of each class index.
        width: Width of the strip in pixels (the picture's).
        background: Class left out of the legend.
        ignore_index: Void label, left out of the legend.

    Returns:
        uint8 ``(rows * row height + 4, width, 3)``; ``(0, width, 3)`` when no class is present.
    """
    classes = sorted(
        set().union(*(present_classes(m, background, ignore_index) for m in label_maps))
    )
    if not classes:
        return np.zeros((0, width, 3), dtype=np.uint8)
    font = ImageFont.load_default()
    row = _text_height(font) + 4
    swatch = row - 4
    colours = _colour_table(palette)
    placed: list[tuple[int, int, int]] = []  # (class, left, row index)
    left, line = 2, 0
    for c in classes:
        name = str(class_names[c]) if c < len(class_names) else str(c)
        entry = swatch + 4 + int(np.ceil(font.getlength(name)))
        if left > 2 and left + entry > width - 2:
            left, line = 2, line + 1
        placed.append((c, left, line))
        left += entry + 10
    strip = Image.new("RGB", (width, (line + 1) * row + 4), (255, 255, 255))
    draw = ImageDraw.Draw(strip)
    for c, x, k in placed:
        top = 2 + k * row + 2
        colour = tuple(int(v) for v in colours[c])
        draw.rectangle((x, top, x + swatch - 1, top + swatch - 1), fill=colour)
        draw.rectangle((x, top, x + swatch - 1, top + swatch - 1), outline=(0, 0, 0))
        name = str(class_names[c]) if c < len(class_names) else str(c)
        _draw_text(draw, (x + swatch + 4, top + swatch / 2), name, font, centre=False)
    return np.asarray(strip).copy()


def legend_below(
    image: np.ndarray,
    label_map: np.ndarray,
    class_names: Sequence[str],
    palette: Palette,
    background: int = BACKGROUND,
    ignore_index: int = IGNORE_INDEX,
) -> np.ndarray:
    """The image with a :func:`legend_strip` of ``label_map``'s classes added below it.

    The image's own pixels are never covered (however small the image); with no class
    present it comes back unchanged.

    Returns:
        A new uint8 ``(H + strip height, W, 3)`` array.
    """
    rgb = _check_rgb(image)
    strip = legend_strip([label_map], class_names, palette, rgb.shape[1], background, ignore_index)
    return np.concatenate([rgb, strip], axis=0)


def error_map(
    image: np.ndarray,
    target: np.ndarray,
    prediction: np.ndarray,
    ignore_index: int = IGNORE_INDEX,
) -> np.ndarray:
    """The errors tile: wrong pixels red, void pixels grey, correct pixels dimmed.

    Args:
        image: uint8 RGB ``(H, W, 3)``.
        target: ``(H, W)`` ground truth (``ignore_index`` = void).
        prediction: ``(H, W)`` predicted classes.
        ignore_index: Void label.

    Returns:
        A new uint8 ``(H, W, 3)`` array: :data:`ERROR_COLOUR` where ``prediction != target``
        on labelled pixels, :data:`VOID_COLOUR` on void, the image times :data:`CORRECT_DIM`
        elsewhere.
    """
    rgb = _check_rgb(image)
    target, prediction = np.asarray(target), np.asarray(prediction)
    if target.shape != rgb.shape[:2] or prediction.shape != rgb.shape[:2]:
        raise ValueError(
            f"target {target.shape} and prediction {prediction.shape} must match image "
            f"{rgb.shape[:2]}"
        )
    out = (rgb.astype(np.float32) * CORRECT_DIM).astype(np.uint8)
    void = target == ignore_index
    out[void] = VOID_COLOUR
    out[(prediction != target) & ~void] = ERROR_COLOUR
    return out


def comparison_panel(
    image: np.ndarray,
    target: np.ndarray,
    prediction: np.ndarray,
    palette: Palette,
    class_names: Sequence[str] | None = None,
    alpha: float = 0.5,
    background: int = BACKGROUND,
    ignore_index: int = IGNORE_INDEX,
) -> np.ndarray:
    """Image | ground truth | prediction | errors side by side, each under a title bar.

    The ground-truth and prediction tiles are :func:`overlay` s; when ``class_names`` is
    given, a :func:`legend_strip` of the classes of both runs below the tiles (never over
    them). The errors tile is :func:`error_map` and its title gives the share of wrong pixels
    among the labelled ones.

    Args:
        image: uint8 RGB ``(H, W, 3)``.
        target: ``(H, W)`` ground truth (``ignore_index`` = void).
        prediction: ``(H, W)`` predicted classes.
        palette: Colour of each class index.
        class_names: Name of each class index; ``None`` draws no legends.
        alpha: Opacity of the class colours.
        background: Class left untinted.
        ignore_index: Void label.

    Returns:
        uint8 RGB ``(TITLE_HEIGHT + H + legend height, 4 * W + 3 * TILE_GAP, 3)`` on white;
        tile ``k`` starts at column ``k * (W + TILE_GAP)``, the legend at row
        ``TITLE_HEIGHT + H``.
    """
    rgb = _check_rgb(image)
    height, width = rgb.shape[:2]
    target, prediction = np.asarray(target), np.asarray(prediction)
    tiles = [rgb]
    for labels in (target, prediction):
        tiles.append(overlay(rgb, labels, palette, alpha, background, ignore_index))
    tiles.append(error_map(rgb, target, prediction, ignore_index))
    labelled = target != ignore_index
    wrong = int(((prediction != target) & labelled).sum())
    share = 100.0 * wrong / max(int(labelled.sum()), 1)
    titles = [*PANEL_TITLES[:3], f"{PANEL_TITLES[3]} {share:.1f}%"]

    total = 4 * width + 3 * TILE_GAP
    strip = (
        legend_strip([target, prediction], class_names, palette, total, background, ignore_index)
        if class_names is not None
        else np.zeros((0, total, 3), dtype=np.uint8)
    )
    panel = Image.new("RGB", (total, TITLE_HEIGHT + height + len(strip)), (255, 255, 255))
    font = ImageFont.load_default()
    for k, (tile, title) in enumerate(zip(tiles, titles)):
        bar = Image.new("RGB", (width, TITLE_HEIGHT), (255, 255, 255))
        _draw_text(ImageDraw.Draw(bar), (width / 2, TITLE_HEIGHT / 2), title, font, centre=True)
        left = k * (width + TILE_GAP)
        panel.paste(bar, (left, 0))
        panel.paste(Image.fromarray(tile), (left, TITLE_HEIGHT))
    if len(strip):
        panel.paste(Image.fromarray(strip), (0, TITLE_HEIGHT + height))
    return np.asarray(panel).copy()


def _check_rgb(image: np.ndarray) -> np.ndarray:
    rgb = np.asarray(image)
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected a uint8 (H, W, 3) image, got {rgb.dtype} {rgb.shape}")
    return rgb


def _colour_table(palette: Palette) -> np.ndarray:
    """``(256, 3)`` uint8 colours: ``palette`` padded with black."""
    table = np.zeros((256, 3), dtype=np.uint8)
    colours = np.asarray(list(palette)[:256], dtype=np.uint8).reshape(-1, 3)
    table[: len(colours)] = colours
    return table


def _boundaries(labels: np.ndarray) -> np.ndarray:
    """Pixels with a 4-neighbour of another label."""
    edge = np.zeros(labels.shape, dtype=bool)
    across = labels[:, 1:] != labels[:, :-1]
    edge[:, 1:] |= across
    edge[:, :-1] |= across
    down = labels[1:, :] != labels[:-1, :]
    edge[1:, :] |= down
    edge[:-1, :] |= down
    return edge


def _text_height(font: Any) -> int:
    return int(font.getbbox("Ag")[3])


def _draw_text(
    draw: ImageDraw.ImageDraw, at: tuple[float, float], text: str, font: Any, centre: bool
):
    """Black ``text`` vertically centred on ``at``; starting at ``at`` or centred on it.

    (Computed from the text's box rather than with PIL anchors, which bitmap fonts lack.)
    """
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    x = at[0] - (left + right) / 2 if centre else at[0] - left
    y = at[1] - (top + bottom) / 2
    draw.text((round(x), round(y)), text, fill=(0, 0, 0), font=font)


OVERLAY_SUFFIX = "_overlay"
"""``<stem>_overlay.png`` beside ``<stem>.png``: the names every prediction writer uses."""
OVERLAY_ALPHA = 0.5
"""Default opacity of the class colours in prediction overlays."""


def prediction_file_names(stem: str) -> tuple[str, str]:
    """``(mask, overlay)`` file names of the prediction of image ``<stem>.<ext>``."""
    return f"{stem}.png", f"{stem}{OVERLAY_SUFFIX}.png"


def write_prediction_files(
    out: Path,
    stem: str,
    image: np.ndarray,
    label_map: np.ndarray,
    palette: Palette,
    class_names: Sequence[str],
    alpha: float = OVERLAY_ALPHA,
) -> None:
    """Write one image's prediction: ``<stem>.png`` and (``alpha > 0``) ``<stem>_overlay.png``.

    The one prediction writer of seglit: ``seglit predict`` on a folder of images and the
    Lightning CLI's ``predict`` (:class:`seglit.callbacks.PredictionWriter`) both call it, so
    they write the same files in the same format. Files are written atomically.

    Args:
        out: Destination folder (exists).
        stem: The image's file name without its extension.
        image: The image, ``(H, W, 3)`` uint8.
        label_map: Predicted class per pixel, ``(H, W)``.
        palette: Colour of each class (flat or ``[[r, g, b], ...]``).
        class_names: Name of each class (for the legend below the overlay).
        alpha: Opacity of the class colours; 0 writes the mask only.
    """
    mask_name, overlay_name = prediction_file_names(stem)
    with atomic_file(out / mask_name, "wb") as handle:
        palette_image(label_map, palette).save(handle, format="PNG")
    if alpha <= 0:
        return
    tinted = overlay(image, label_map, palette, alpha)
    tinted = legend_below(tinted, label_map, class_names, palette)
    with atomic_file(out / overlay_name, "wb") as handle:
        Image.fromarray(tinted).save(handle, format="PNG")
