"""Colour palettes for label maps (Pascal VOC and Cityscapes conventions)."""

from __future__ import annotations


def voc_palette(num_colors: int = 256) -> list[tuple[int, int, int]]:
    """The Pascal VOC colour map (the palette stored in every ``SegmentationClass`` PNG).

    Colour ``i`` is built from the bits of ``i`` exactly as in the VOC devkit's ``labelcolormap``:
    0 is black (background), 1 is (128, 0, 0), ... and 255 (void) is (224, 224, 192).

    Args:
        num_colors: number of entries to return (256 for a full PNG palette).

    Returns:
        A list of ``(r, g, b)`` tuples, one per label value.
    """
    palette = []
    for index in range(num_colors):
        r = g = b = 0
        c = index
        for shift in range(7, -1, -1):
            r |= ((c >> 0) & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette.append((r, g, b))
    return palette


def flat_palette(palette: list[tuple[int, int, int]]) -> list[int]:
    """Flatten a palette into the 768-int list ``PIL.Image.putpalette`` expects (zero padded)."""
    flat = [channel for colour in palette[:256] for channel in colour]
    return flat + [0] * (768 - len(flat))
