"""The VOC reader: torchvision equivalence and a clear error for each kind of bad data."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from seglit.data.palette import flat_palette, voc_palette
from seglit.data.synthetic import SYNTHETIC_CLASSES
from seglit.data.voc import VOCSegmentationDataset

NUM_CLASSES = len(SYNTHETIC_CLASSES)


def _voc(root):
    return root / "VOCdevkit" / "VOC2012"


def _dataset(root, split="train"):
    return VOCSegmentationDataset(root, split, num_classes=NUM_CLASSES)


@pytest.mark.parametrize("split", ["train", "val"])
def test_same_arrays_as_torchvision(synthetic_voc_root, split):
    from torchvision.datasets import VOCSegmentation

    ours = _dataset(synthetic_voc_root, split)
    reference = VOCSegmentation(str(synthetic_voc_root), year="2012", image_set=split)
    assert len(ours) == len(reference)
    for index in range(len(ours)):
        sample = ours[index]
        ref_image, ref_mask = reference[index]
        assert sample["name"] == ours.names[index]
        assert ref_mask.mode == "P"
        np.testing.assert_array_equal(sample["mask"], np.array(ref_mask))
        np.testing.assert_array_equal(sample["image"], np.array(ref_image))
        assert sample["mask"].dtype == np.uint8 and sample["image"].shape[2] == 3


def test_transform_receives_image_and_mask(synthetic_voc_root):
    seen = {}

    def transform(image, mask):
        seen["shapes"] = (image.shape, mask.shape)
        return {"image": image[:4], "mask": mask[:4]}

    sample = VOCSegmentationDataset(synthetic_voc_root, "val", transform, NUM_CLASSES)[0]
    assert seen["shapes"][0][:2] == seen["shapes"][1]
    assert sample["mask"].shape[0] == 4 and "name" in sample


def test_missing_root(tmp_path):
    with pytest.raises(FileNotFoundError, match="VOCdevkit/VOC2012") as err:
        _dataset(tmp_path / "nowhere")
    assert "prepare voc" in str(err.value)


def test_missing_split_file_lists_available(voc_copy):
    with pytest.raises(FileNotFoundError, match=r"trainaug\.txt.*train, val"):
        _dataset(voc_copy, "trainaug")


def test_empty_split(voc_copy):
    (_voc(voc_copy) / "ImageSets/Segmentation/val.txt").write_text("\n\n")
    with pytest.raises(ValueError, match=r"val\.txt is empty"):
        _dataset(voc_copy, "val")


def test_id_without_image(voc_copy):
    split = _voc(voc_copy) / "ImageSets/Segmentation/train.txt"
    split.write_text(split.read_text() + "no_such_id\n")
    with pytest.raises(FileNotFoundError, match=r"JPEGImages/no_such_id\.jpg"):
        _dataset(voc_copy)


def test_id_without_mask(voc_copy):
    (_voc(voc_copy) / "SegmentationClass/synth_000002.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"SegmentationClass/synth_000002\.png"):
        _dataset(voc_copy)


def _first_mask(root):
    image_id = (_voc(root) / "ImageSets/Segmentation/train.txt").read_text().split()[0]
    return image_id, _voc(root) / "SegmentationClass" / f"{image_id}.png"


def _save_palette_mask(path, values):
    mask = Image.fromarray(values.astype(np.uint8), mode="P")
    mask.putpalette(flat_palette(voc_palette()))
    mask.save(path)


def test_image_and_mask_sizes_differ(voc_copy):
    image_id, mask_path = _first_mask(voc_copy)
    values = np.array(Image.open(mask_path))
    _save_palette_mask(mask_path, values[:-3])
    with pytest.raises(ValueError, match=rf"{image_id}\.jpg is .* but its label map .*must match"):
        _dataset(voc_copy)[0]


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_corrupt_image(voc_copy, damage):
    image_id, _ = _first_mask(voc_copy)
    image_path = _voc(voc_copy) / "JPEGImages" / f"{image_id}.jpg"
    data = image_path.read_bytes()
    image_path.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"not a jpeg")
    with pytest.raises(ValueError, match=rf"cannot read image .*{image_id}\.jpg"):
        _dataset(voc_copy)[0]


def test_mask_values_outside_the_classes(voc_copy):
    _, mask_path = _first_mask(voc_copy)
    values = np.array(Image.open(mask_path))
    values[0, 0] = NUM_CLASSES  # one past the last class
    values[0, 1] = 200
    _save_palette_mask(mask_path, values)
    with pytest.raises(ValueError, match=rf"{mask_path.name} holds values \[5, 200\] outside"):
        _dataset(voc_copy)[0]


def test_rgb_mask_where_a_palette_mask_belongs(voc_copy):
    _, mask_path = _first_mask(voc_copy)
    Image.open(mask_path).convert("RGB").save(mask_path)
    with pytest.raises(ValueError, match=rf"{mask_path.name} has mode 'RGB'"):
        _dataset(voc_copy)[0]


def test_greyscale_index_masks_are_accepted(voc_copy):
    _, mask_path = _first_mask(voc_copy)
    values = np.array(Image.open(mask_path))
    Image.fromarray(values, mode="L").save(mask_path)
    np.testing.assert_array_equal(_dataset(voc_copy)[0]["mask"], values)
