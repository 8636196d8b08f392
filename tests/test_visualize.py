"""Pictures of label maps: overlays, legends, comparison panels, palette PNGs, denormalize."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from seglit.data.palette import voc_palette
from seglit.visualize import (
    CORRECT_DIM,
    ERROR_COLOUR,
    TILE_GAP,
    TITLE_HEIGHT,
    VOID_COLOUR,
    comparison_panel,
    denormalize,
    error_map,
    legend_below,
    legend_strip,
    overlay,
    palette_image,
)

NAMES = ["background", "cat", "dog", "bird", "fish"]
PALETTE = voc_palette(len(NAMES))  # black, (128, 0, 0), (0, 128, 0), (128, 128, 0), (0, 0, 128)
H, W = 90, 120


def _scene(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A noisy image and a label map: background, a cat box, a dog box, a void band."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, size=(H, W, 3), dtype=np.uint8)
    label = np.zeros((H, W), dtype=np.uint8)
    label[10:50, 60:110] = 1
    label[55:85, 5:40] = 2
    label[:, 50] = 255
    return image, label


def test_overlay_leaves_background_and_void_untouched_and_tints_the_rest():
    image, label = _scene()
    out = overlay(image, label, PALETTE, alpha=0.5)
    assert out.shape == image.shape and out.dtype == np.uint8
    untouched = (label == 0) | (label == 255)
    assert np.array_equal(out[untouched], image[untouched])  # byte-identical
    for c in (1, 2):
        region = label == c
        colour = np.asarray(PALETTE[c], dtype=np.int64)
        before = np.abs(image[region].astype(np.int64) - colour).sum(-1)
        after = np.abs(out[region].astype(np.int64) - colour).sum(-1)
        assert (after <= before).all() and after.sum() < 0.6 * before.sum()


def test_overlay_outlines_class_regions_in_their_colour():
    image, label = _scene()
    out = overlay(image, label, PALETTE, alpha=0.5, contour=True)
    plain = overlay(image, label, PALETTE, alpha=0.5, contour=False)
    assert (out[10, 60:110] == PALETTE[1]).all()  # top edge of the cat box
    assert (out[55:85, 5] == PALETTE[2]).all()  # left edge of the dog box
    inside = np.zeros_like(label, dtype=bool)
    inside[11:49, 61:109] = True
    assert np.array_equal(out[inside], plain[inside])
    assert np.array_equal(out[label == 0], image[label == 0])


def test_overlay_rejects_classes_without_a_colour_and_mismatched_shapes():
    image, label = _scene()
    with pytest.raises(ValueError, match="no colour"):
        overlay(image, np.full((H, W), 7, np.uint8), PALETTE)
    with pytest.raises(ValueError, match="does not match"):
        overlay(image, label[:-1], PALETTE)


def _has_colour(pixels: np.ndarray, colour) -> bool:
    return bool(np.all(pixels == np.asarray(colour, dtype=np.uint8), axis=-1).any())


def test_legend_below_shows_a_swatch_of_each_present_class_only():
    image = np.full((H, W, 3), 200, dtype=np.uint8)  # a flat grey: no class colour anywhere
    label = np.zeros((H, W), dtype=np.uint8)
    label[60:, 80:] = 1  # cat
    label[70:, :20] = 3  # bird
    label[0, 0] = 255
    out = legend_below(image, label, NAMES, PALETTE)
    assert out.shape[0] > H and out.shape[1:] == image.shape[1:]
    assert np.array_equal(out[:H], image)  # the picture itself is untouched
    strip = out[H:]
    assert _has_colour(strip, PALETTE[1]) and _has_colour(strip, PALETTE[3])
    assert not _has_colour(strip, PALETTE[2]) and not _has_colour(strip, PALETTE[4])
    swatch = np.all(strip == np.asarray(PALETTE[1], np.uint8), axis=-1)
    assert swatch.sum() >= 25  # a square, not a stray pixel


def test_comparison_panel_has_four_titled_tiles_and_marks_exactly_the_wrong_pixels():
    image, target = _scene()
    prediction = np.where(target == 255, 0, target).astype(np.uint8)
    prediction[20:30, 70:80] = 2  # a dog inside the cat
    prediction[0:5, 0:5] = 4  # a fish on the background
    prediction[40:45, 50] = 3  # wrong, but on void: not an error
    panel = comparison_panel(image, target, prediction, PALETTE, NAMES)
    strip = legend_strip([target, prediction], NAMES, PALETTE, 4 * W + 3 * TILE_GAP)
    assert panel.shape == (TITLE_HEIGHT + H + len(strip), 4 * W + 3 * TILE_GAP, 3)
    assert np.array_equal(panel[TITLE_HEIGHT + H :], strip)  # the legend, below the tiles
    rows = slice(TITLE_HEIGHT, TITLE_HEIGHT + H)
    tiles = [panel[rows, k * (W + TILE_GAP) : k * (W + TILE_GAP) + W] for k in range(4)]
    assert np.array_equal(tiles[0], image)
    titles = panel[:TITLE_HEIGHT]
    for k in range(4):
        bar = titles[:, k * (W + TILE_GAP) : k * (W + TILE_GAP) + W]
        assert (bar < 128).any() and (bar == 255).mean() > 0.5  # black text on white
    assert (panel[: TITLE_HEIGHT + H, W : W + TILE_GAP] == 255).all()  # the gap between tiles

    wrong = (prediction != target) & (target != 255)
    assert wrong.sum() == 10 * 10 + 5 * 5
    errors = tiles[3]
    assert np.array_equal(np.all(errors == ERROR_COLOUR, axis=-1), wrong)
    assert np.all(errors[target == 255] == VOID_COLOUR)
    correct = ~wrong & (target != 255)
    dimmed = (image[correct].astype(np.float32) * CORRECT_DIM).astype(np.uint8)
    assert np.array_equal(errors[correct], dimmed)
    assert np.array_equal(error_map(image, target, prediction), errors)

    # no legend covers the tiles: they are the overlays, every pixel
    assert np.array_equal(tiles[1], overlay(image, target, PALETTE))
    assert np.array_equal(tiles[2], overlay(image, prediction, PALETTE))
    # the legend names the fish that only the prediction has
    assert _has_colour(strip, PALETTE[4]) and _has_colour(strip, PALETTE[1])


def test_comparison_panel_without_names_draws_no_legend():
    image, target = _scene()
    panel = comparison_panel(image, target, target, PALETTE)
    tile = panel[TITLE_HEIGHT:, W + TILE_GAP : 2 * W + TILE_GAP]
    assert np.array_equal(tile, overlay(image, target, PALETTE))


def test_palette_image_keeps_indices_and_colours(tmp_path):
    _, label = _scene()
    path = tmp_path / "mask.png"
    palette_image(label, PALETTE).save(path)
    with Image.open(path) as image:
        assert image.mode == "P"
        assert np.array_equal(np.asarray(image), label)
        assert image.getpalette()[3:9] == [128, 0, 0, 0, 128, 0]


MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def test_denormalize_inverts_the_datamodule_normalisation():
    from seglit.data.transforms import build_eval_transform

    rgb = np.random.default_rng(1).integers(0, 256, size=(7, 9, 3), dtype=np.uint8)
    normed = build_eval_transform(MEAN, STD)(image=rgb)["image"]  # a (3, H, W) tensor
    assert isinstance(normed, torch.Tensor) and normed.shape == (3, 7, 9)
    # by hand: pixel = (x * std + mean) * 255 for the red channel of pixel (0, 0)
    red = (float(normed[0, 0, 0]) * STD[0] + MEAN[0]) * 255
    out = denormalize(normed, MEAN, STD)
    assert out.dtype == np.uint8 and out.shape == (7, 9, 3)
    assert out[0, 0, 0] == round(red) == rgb[0, 0, 0]
    assert np.array_equal(out, rgb)
    batch = denormalize(torch.stack([normed, normed]).half().double(), MEAN, STD)
    assert batch.shape == (2, 7, 9, 3) and np.array_equal(batch[1], rgb)
    assert np.array_equal(denormalize(normed.numpy(), MEAN, STD), rgb)


def test_denormalize_without_statistics_scales_each_image_to_its_range():
    x = np.stack([np.full((3, 2, 2), -1.0), np.full((3, 2, 2), 4.0)])
    x[0, 0, 0, 0], x[1, 2, 1, 1] = 3.0, 9.0
    out = denormalize(x)
    assert out[0].min() == 0 and out[0].max() == 255 and out[1].max() == 255
    with pytest.raises(ValueError, match="both mean and std"):
        denormalize(x, mean=MEAN)
    with pytest.raises(ValueError, match="expected"):
        denormalize(np.zeros((4, 5, 5)), MEAN, STD)


def test_visualize_imports_neither_torch_nor_lightning():
    code = (
        "import sys, seglit.visualize; "
        "print(sorted(m for m in ('torch', 'lightning', 'matplotlib') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


def test_prediction_writer_writes_mask_overlay_with_legend_and_panel(tmp_path):
    from types import SimpleNamespace

    from seglit.callbacks import PredictionWriter
    from seglit.data.transforms import build_eval_transform, pad_collate

    image, target = _scene()
    transform = build_eval_transform(MEAN, STD)
    small = np.ascontiguousarray(image[:60, :80])
    samples = [
        {**transform(image=image, mask=target), "name": "big.jpg", "size": (H, W)},
        {**transform(image=small, mask=target[:60, :80]), "name": "small.jpg", "size": (60, 80)},
    ]
    batch = pad_collate(samples)  # the small one is padded: image 0, mask 255
    pred = torch.where(batch["mask"] == 255, 0, batch["mask"]).to(torch.uint8)
    pred[0, 0:5, 0:5] = 4  # a fish on the background of the big image
    prediction = {"pred": pred, "name": batch["name"], "size": batch["size"]}
    datamodule = SimpleNamespace(palette=PALETTE, class_names=NAMES, mean=MEAN, std=STD)
    trainer = SimpleNamespace(datamodule=datamodule, default_root_dir=str(tmp_path))
    PredictionWriter(output_dir=str(tmp_path / "out")).write_on_batch_end(
        trainer, None, prediction, None, batch, 0
    )
    out = tmp_path / "out"
    with Image.open(out / "small.png") as mask:
        assert mask.mode == "P" and mask.size == (80, 60)
        assert np.array_equal(np.asarray(mask), pred[1, :60, :80].numpy())
    with Image.open(out / "big.png") as mask:
        assert np.array_equal(np.asarray(mask), pred[0].numpy())
    labels = pred[0].numpy()
    expected = legend_below(overlay(image, labels, PALETTE), labels, NAMES, PALETTE)
    with Image.open(out / "big_overlay.png") as png:  # the folder mode's writer and format
        assert np.array_equal(np.asarray(png), expected)
    with Image.open(out / "big_panel.png") as panel:
        panel = np.asarray(panel)
    assert np.array_equal(panel, comparison_panel(image, target, pred[0].numpy(), PALETTE, NAMES))
    small_labels = [target[:60, :80], pred[1, :60, :80].numpy()]
    strip = legend_strip(small_labels, NAMES, PALETTE, 4 * 80 + 3 * TILE_GAP)
    with Image.open(out / "small_panel.png") as panel:
        assert panel.size == (4 * 80 + 3 * TILE_GAP, TITLE_HEIGHT + 60 + len(strip))


def test_a_legend_below_never_covers_even_a_small_image():
    image = np.full((45, 133, 3), 90, dtype=np.uint8)  # a small predict input
    label = (np.arange(45 * 133).reshape(45, 133) % 5).astype(np.uint8)  # every class present
    out = legend_below(image, label, NAMES, PALETTE)
    assert out.shape[1] == 133 and out.shape[0] > 45
    assert np.array_equal(out[:45], image)  # not one pixel of the picture covered
    for c in (1, 2, 3, 4):  # every class named (wrapped into rows), none left out
        assert _has_colour(out[45:], PALETTE[c])
    assert np.array_equal(legend_below(image, np.zeros((45, 133), np.uint8), NAMES, PALETTE), image)
