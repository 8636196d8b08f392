"""The synthetic dataset: real VOC layout, palette masks, determinism and caching."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from seglit.data.palette import voc_palette
from seglit.data.synthetic import MARKER_NAME, SYNTHETIC_CLASSES, write_synthetic_voc


def _voc(root):
    return root / "VOCdevkit" / "VOC2012"


def test_layout_matches_voc(synthetic_voc_root):
    voc = _voc(synthetic_voc_root)
    train = (voc / "ImageSets/Segmentation/train.txt").read_text().split()
    val = (voc / "ImageSets/Segmentation/val.txt").read_text().split()
    assert len(train) == 6 and len(val) == 5 and not set(train) & set(val)
    for image_id in train + val:
        assert (voc / "JPEGImages" / f"{image_id}.jpg").is_file()
        assert (voc / "SegmentationClass" / f"{image_id}.png").is_file()
    assert len(list((voc / "JPEGImages").iterdir())) == 11


def test_masks_are_voc_palette_pngs_of_class_indices(synthetic_voc_root):
    voc = _voc(synthetic_voc_root)
    expected_palette = [c for colour in voc_palette() for c in colour]
    sizes, seen = set(), set()
    for mask_path in sorted((voc / "SegmentationClass").glob("*.png")):
        with (
            Image.open(mask_path) as mask,
            Image.open(voc / "JPEGImages" / f"{mask_path.stem}.jpg") as image,
        ):
            assert mask.mode == "P"
            assert mask.getpalette() == expected_palette
            assert mask.size == image.size and image.mode == "RGB"
            values = np.array(mask)
        sizes.add(mask.size)
        seen |= set(np.unique(values).tolist())
        assert set(np.unique(values)) <= set(range(len(SYNTHETIC_CLASSES))) | {255}
        assert (values == 255).any(), "void borders along object edges"
        assert (values == 0).any()
    assert all(57 <= side <= 131 for size in sizes for side in size)
    assert len(sizes) > 5, "image sizes vary"
    assert seen == set(range(len(SYNTHETIC_CLASSES))) | {255}


def test_void_band_separates_classes(synthetic_voc_root):
    # Without the band, 4-neighbours with different classes would touch.
    for mask_path in (_voc(synthetic_voc_root) / "SegmentationClass").glob("*.png"):
        m = np.array(Image.open(mask_path)).astype(int)
        for a, b in ((m[1:], m[:-1]), (m[:, 1:], m[:, :-1])):
            touching = (a != b) & (a != 255) & (b != 255)
            assert not touching.any(), mask_path


def test_deterministic_from_seed(tmp_path):
    a = write_synthetic_voc(tmp_path / "a", num_train=2, num_val=1, seed=3)
    b = write_synthetic_voc(tmp_path / "b", num_train=2, num_val=1, seed=3)
    c = write_synthetic_voc(tmp_path / "c", num_train=2, num_val=1, seed=4)
    files = sorted(p.relative_to(_voc(a)) for p in _voc(a).rglob("*") if p.is_file())
    assert len(files) == 3 * 2 + 2 + 1
    for rel in files:
        assert (_voc(a) / rel).read_bytes() == (_voc(b) / rel).read_bytes()
    assert (_voc(a) / "JPEGImages/synth_000000.jpg").read_bytes() != (
        _voc(c) / "JPEGImages/synth_000000.jpg"
    ).read_bytes()


def test_second_call_reuses_the_cache(tmp_path):
    root = write_synthetic_voc(tmp_path, num_train=2, num_val=1)
    image = _voc(root) / "JPEGImages/synth_000000.jpg"
    image.write_bytes(b"sentinel")  # would be overwritten by a regeneration
    write_synthetic_voc(tmp_path, num_train=2, num_val=1)
    assert image.read_bytes() == b"sentinel"
    params = json.loads((_voc(root) / MARKER_NAME).read_text())
    assert params["num_train"] == 2 and params["num_val"] == 1


def test_other_parameters_refuse_then_overwrite(tmp_path):
    write_synthetic_voc(tmp_path, num_train=2, num_val=1)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_synthetic_voc(tmp_path, num_train=3, num_val=1)
    write_synthetic_voc(tmp_path, num_train=3, num_val=1, overwrite=True)
    train = (_voc(tmp_path) / "ImageSets/Segmentation/train.txt").read_text().split()
    assert len(train) == 3
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".synthetic")]


def test_never_overwrites_a_tree_it_did_not_write(tmp_path):
    (tmp_path / "VOCdevkit" / "VOC2012").mkdir(parents=True)
    with pytest.raises(FileExistsError, match="not written by write_synthetic_voc"):
        write_synthetic_voc(tmp_path, num_train=1, num_val=1)


@pytest.mark.parametrize(
    "kwargs", [{"num_train": 0}, {"min_size": 10}, {"min_size": 90, "max_size": 80}]
)
def test_bad_arguments(tmp_path, kwargs):
    with pytest.raises(ValueError):
        write_synthetic_voc(tmp_path, **kwargs)
