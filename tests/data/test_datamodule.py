"""DataModules: declared classes, batch formats, evaluation at full size, DDP, seeding, CLI."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from jsonargparse import ArgumentParser
from lightning import LightningDataModule
from PIL import Image
from torch.utils.data import Dataset

import seglit.data.base as base
from seglit.data import (
    SYNTHETIC_CLASSES,
    VOC_CLASSES,
    SegmentationDataModule,
    SyntheticVOCDataModule,
    UnpaddedDistributedSampler,
    VOCDataModule,
    voc_palette,
)
from seglit.data.samplers import SeededSampler
from seglit.data.synthetic import MARKER_NAME


def test_voc_declares_classes_before_setup(tmp_path):
    dm = VOCDataModule(root=str(tmp_path / "missing"))
    assert dm.num_classes == 21 and dm.class_names == list(VOC_CLASSES)
    assert dm.palette[:2] == [(0, 0, 0), (128, 0, 0)] and len(dm.palette) == 21
    assert dm.ignore_index == 255
    assert dm.mean == (0.485, 0.456, 0.406) and dm.std == (0.229, 0.224, 0.225)


def test_missing_data_fails_in_setup_before_training(tmp_path):
    with pytest.raises(FileNotFoundError, match="VOCdevkit/VOC2012"):
        VOCDataModule(root=str(tmp_path)).setup("fit")


def test_missing_split_fails_in_setup(voc_copy):
    (voc_copy / "VOCdevkit/VOC2012" / MARKER_NAME).unlink()  # now it looks like real VOC
    dm = VOCDataModule(root=str(voc_copy), train_split="trainaug")
    with pytest.raises(FileNotFoundError, match=r"trainaug\.txt"):
        dm.setup("fit")


def test_voc_refuses_synthetic_data(synthetic_voc_root):
    with pytest.raises(ValueError, match="synthetic dataset .* seglit.data.SyntheticVOCDataModule"):
        VOCDataModule(root=str(synthetic_voc_root)).setup("fit")


def test_synthetic_defaults_to_a_cache_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGLIT_CACHE", str(tmp_path))
    dm = SyntheticVOCDataModule(num_train=3, num_val=2, batch_size=2)
    other = SyntheticVOCDataModule(num_train=3, num_val=2, seed=1)
    assert dm.root.startswith(str(tmp_path / "synthetic_voc-")) and other.root != dm.root
    assert dm.num_classes == len(SYNTHETIC_CLASSES) and dm.palette == voc_palette(5)
    dm.prepare_data()
    dm.setup("fit")
    assert len(dm.train_dataset) == 3 and len(dm.val_dataset) == 2


@pytest.fixture
def synthetic_dm(synthetic_voc_root):
    def make(**kwargs):
        dm = SyntheticVOCDataModule(
            root=str(synthetic_voc_root), num_train=6, num_val=5, seed=1, **kwargs
        )
        dm.prepare_data()
        dm.setup(None)
        return dm

    return make


def test_train_batches(synthetic_dm):
    dm = synthetic_dm(batch_size=4, crop_size=(40, 48))
    batches = list(dm.train_dataloader())
    assert len(batches) == 1, "6 samples, batch 4: the ragged batch is dropped"
    batch = batches[0]
    assert batch["image"].shape == (4, 3, 40, 48) and batch["image"].dtype == torch.float32
    assert batch["mask"].shape == (4, 40, 48) and batch["mask"].dtype == torch.int64
    assert set(batch["mask"].unique().tolist()) <= set(range(5)) | {255}
    assert len(batch["name"]) == 4 and all(n.startswith("synth_") for n in batch["name"])


@pytest.mark.parametrize("val_batch_size", [1, 2])
def test_val_batches_keep_original_resolution(synthetic_dm, val_batch_size):
    dm = synthetic_dm(val_batch_size=val_batch_size)
    dataset = dm.val_dataset
    seen = 0
    for batch in dm.val_dataloader():
        for k, name in enumerate(batch["name"]):
            index = dataset.names.index(name)
            _, mask = dataset.read(index)
            h, w = mask.shape
            assert torch.equal(batch["mask"][k, :h, :w], torch.from_numpy(mask).long())
            assert (batch["mask"][k, h:] == 255).all() and (batch["mask"][k, :, w:] == 255).all()
            seen += 1
    assert seen == len(dataset) == 5


def test_predict_batches(tmp_path):
    for name, size in [("a.png", (30, 20)), ("b.jpg", (25, 35))]:
        Image.new("RGB", size, (10, 20, 30)).save(tmp_path / name)
    (tmp_path / "notes.txt").write_text("not an image")
    dm = VOCDataModule(root="unused", predict_dir=str(tmp_path), val_batch_size=2, num_workers=0)
    dm.setup("predict")
    (batch,) = list(dm.predict_dataloader())
    assert batch["name"] == ["a.png", "b.jpg"] and batch["size"] == [(20, 30), (35, 25)]
    assert batch["image"].shape == (2, 3, 35, 30) and "mask" not in batch


def test_predict_needs_a_folder():
    with pytest.raises(ValueError, match="predict_dir"):
        VOCDataModule(root="unused").setup("predict")


def test_ddp_samplers(synthetic_dm, monkeypatch):
    dm = synthetic_dm(batch_size=2)
    monkeypatch.setattr(base, "_world", lambda: (1, 2))
    monkeypatch.setenv("PL_GLOBAL_SEED", "7")
    train = dm.train_dataloader().sampler
    assert isinstance(train, SeededSampler)
    assert (train.rank, train.num_replicas, train.seed) == (1, 2, 7)
    val = dm.val_dataloader().sampler
    assert isinstance(val, UnpaddedDistributedSampler) and list(val) == [1, 3]
    assert isinstance(dm.test_dataloader().sampler, UnpaddedDistributedSampler)


class _SameImage(Dataset):
    """Every index is the same image, so differences between samples come from augmentation."""

    def __init__(self, transform):
        self.transform = transform
        self.image = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
        self.mask = np.zeros((40, 40), dtype=np.uint8)

    def __len__(self):
        return 8

    def __getitem__(self, index):
        return {**self.transform(image=self.image, mask=self.mask), "name": str(index)}


class _ConstantDataModule(SegmentationDataModule):
    class_names = ["background"]
    palette = [(0, 0, 0)]

    def build_dataset(self, stage, transform):
        return _SameImage(transform)


def _train_images(num_workers: int, seed: int, epoch: int = 0) -> torch.Tensor:
    dm = _ConstantDataModule(batch_size=1, num_workers=num_workers, crop_size=24)
    dm.setup("fit")
    previous = os.environ.get("PL_GLOBAL_SEED")
    os.environ["PL_GLOBAL_SEED"] = str(seed)
    try:
        loader = dm.train_dataloader()
    finally:
        if previous is None:
            del os.environ["PL_GLOBAL_SEED"]
        else:
            os.environ["PL_GLOBAL_SEED"] = previous
    loader.sampler.set_epoch(epoch)
    return torch.cat([b["image"] for b in loader])


@pytest.mark.parametrize("num_workers", [0, 2])
def test_augmentation_is_per_worker_and_reproducible(num_workers):
    images = _train_images(num_workers, seed=0)
    # With 2 workers, samples 0 and 1 come from different workers at the same step.
    assert not torch.equal(images[0], images[1])
    assert len({tuple(img.flatten()[:50].tolist()) for img in images}) == len(images)
    assert torch.equal(images, _train_images(num_workers, seed=0))
    assert not torch.equal(images, _train_images(num_workers, seed=1))
    assert not torch.equal(images, _train_images(num_workers, seed=0, epoch=1))


def test_augmentations_do_not_depend_on_the_number_of_workers():
    assert torch.equal(_train_images(0, seed=3), _train_images(2, seed=3))


def test_configurable_from_yaml_style_config(synthetic_voc_root):
    parser = ArgumentParser(exit_on_error=False)
    parser.add_subclass_arguments(LightningDataModule, "data")
    config = {
        "class_path": "seglit.data.SyntheticVOCDataModule",
        "init_args": {
            "root": str(synthetic_voc_root),
            "num_train": 6,
            "num_val": 5,
            "seed": 1,
            "batch_size": 2,
            "crop_size": [32, 48],
            "scale_range": [0.5, 1.5],
            "color_jitter": 0.1,
        },
    }
    dm = parser.instantiate_classes(parser.parse_object({"data": config})).data
    assert isinstance(dm, SyntheticVOCDataModule)
    assert dm.batch_size == 2 and dm.crop_size == (32, 48) and dm.color_jitter == 0.1
    config["init_args"]["batch_sise"] = 3
    with pytest.raises(Exception, match="batch_sise"):
        parser.parse_object({"data": config})
