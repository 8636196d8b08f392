"""Pins of the synthetic data: cache folder names and the files of a few tiny trees.

Every smoke number in the recipes and docs was measured on these bytes. The values were
recorded before ``seglit.data.synthetic`` was split into rendering and writing (issue 23): a
refactor must leave them alone. Change them only on purpose (a new lab design, with its
``_LAB_VERSIONS`` bump), and re-measure the smoke numbers that use the data.
"""

from __future__ import annotations

import hashlib
import inspect
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from seglit.data import (
    SyntheticCityscapesDataModule,
    SyntheticSpec,
    SyntheticVOCDataModule,
    write_synthetic_cityscapes,
    write_synthetic_voc,
)

# (datamodule, arguments, cache folder); the ablation smokes use context / fine_structure 1.0.
CACHE_FOLDERS = [
    (SyntheticVOCDataModule, {}, "synthetic_voc-e9d59e7914"),
    (SyntheticVOCDataModule, {"num_train": 16, "num_val": 5}, "synthetic_voc-e589121c8d"),
    (SyntheticVOCDataModule, {"context": 1.0}, "synthetic_voc-47d3e8f197"),
    (SyntheticVOCDataModule, {"fine_structure": 1.0}, "synthetic_voc-97c6614ed3"),
    (
        SyntheticVOCDataModule,
        {"context": 1.0, "context_cue_share": 1.0},
        "synthetic_voc-472896b3d0",
    ),
    (
        SyntheticVOCDataModule,
        {"scale_variation": 1.0, "min_size": 96, "max_size": 192},
        "synthetic_voc-80f070f5bd",
    ),
    (SyntheticCityscapesDataModule, {}, "synthetic_cityscapes-e9d59e7914"),
    (SyntheticCityscapesDataModule, {"context": 1.0}, "synthetic_cityscapes-47d3e8f197"),
]

# (layout, settings, sha256 of the file names and bytes, sha256 of the names and decoded pixels).
# The first depends on the image encoders too (Pillow, libjpeg, zlib); the second only on the
# lab. Settings given as a SyntheticSpec go through the spec argument, the others by keyword.
TREES = [
    (
        "voc",
        {"num_train": 16, "num_val": 5, "seed": 0},
        "0be77ff0c4b746a6247b1d802e0effddcb24f6663dcf6fb057c40a17ee870882",
        "f1265c39be5f4b3eca5e76d8e88003eefd129d957c4f7c4d31f59fbb43ba1530",
    ),
    (
        "voc",
        SyntheticSpec(num_train=4, num_val=2, seed=0, fine_structure=1.0),
        "fd3989fb674c5869671944b5c8ad9f767a7140e0e910baed66249776f70328e6",
        "522ba25b7578eb351dead8abb064e3f1202d5ebf205286d3cce30f78b6641282",
    ),
    (
        "voc",
        {"num_train": 4, "num_val": 2, "seed": 0, "context": 1.0},
        "c66009ec4a4ee5717594a9bc8d5615f9c4f2018398ba36cdf6410550e90b68f0",
        "5fd4e141c3a6486081513a8e84d4e0a1d4696b5ccc54e1555219efcb2108ec1a",
    ),
    (
        "voc",
        SyntheticSpec(
            num_train=3,
            num_val=2,
            seed=2,
            fine_structure=0.5,
            context=0.5,
            scale_variation=0.5,
            context_cue_share=0.8,
            min_size=64,
            max_size=96,
            max_objects=6,
            void_width=2,
        ),
        "980004ed5c75c827e2f65b97ed487dbbebb35ce20da5d78cc2871afd474146d6",
        "2c370f571cf7a4dba19b03fed66d166e22f48a45200b9b0941b30dcaa161a96d",
    ),
    (
        "cityscapes",
        {"num_train": 4, "num_val": 2, "seed": 0},
        "dca3494fe9dbc567aad4a7ae6d23a95aa7aef9332aed7a7a215854aa8b467fb5",
        "fe7dd298535e4f21377496ce1d569b80e9526cafafe9511ef4217821e66a05d4",
    ),
    (
        "cityscapes",
        SyntheticSpec(num_train=3, num_val=2, seed=1, context=1.0, fine_structure=1.0),
        "a45877704a49f6fc32715c727b889c2cc1468183b4a94ad9edc435e678895579",
        "4260332823277fdb48b22436c44d928edec1ec2f176cda32a33bf7be9906215f",
    ),
]


def _tree_digests(root: Path) -> tuple[str, str]:
    """sha256 of (name, file bytes) and of (name, decoded pixels or text) over a tree."""
    exact, decoded = hashlib.sha256(), hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        name = path.relative_to(root).as_posix().encode() + b"\0"
        data = path.read_bytes()
        exact.update(name + hashlib.sha256(data).digest())
        decoded.update(name)
        if path.suffix in (".jpg", ".png"):
            with Image.open(path) as image:
                decoded.update(f"{image.mode} {image.size}".encode())
                decoded.update(np.asarray(image).tobytes())
                decoded.update(bytes(image.getpalette() or []))
        else:
            decoded.update(data)
    return exact.hexdigest(), decoded.hexdigest()


@pytest.mark.parametrize(("datamodule", "kwargs", "folder"), CACHE_FOLDERS)
def test_cache_folders_are_pinned(tmp_path, monkeypatch, datamodule, kwargs, folder):
    monkeypatch.setenv("SEGLIT_CACHE", str(tmp_path))
    dm = datamodule(**kwargs)
    assert dm.root == str(tmp_path / folder), "the cache key changed: old caches are orphaned"
    assert dm.spec.cache_root(datamodule.layout) == tmp_path / folder


def test_default_spec_cache_key_is_pinned():
    assert SyntheticSpec().cache_key() == "e9d59e7914"
    assert SyntheticSpec().cache_args() == {"num_train": 160, "num_val": 40, "seed": 0}
    # Settings that change nothing (a cue share without context) stay out of the key.
    assert SyntheticSpec(context_cue_share=0.9).cache_key() == "e9d59e7914"


@pytest.mark.parametrize(("layout", "settings", "exact", "decoded"), TREES)
def test_tiny_trees_are_pinned(tmp_path, layout, settings, exact, decoded):
    writer = write_synthetic_voc if layout == "voc" else write_synthetic_cityscapes
    if isinstance(settings, SyntheticSpec):
        writer(tmp_path, settings)
    else:
        writer(tmp_path, **settings)
    got_exact, got_decoded = _tree_digests(tmp_path)
    assert got_decoded == decoded, "the synthetic data changed (names, pixels or marker)"
    assert got_exact == exact, "same pixels, other file bytes: an image encoder changed?"


def test_spec_and_keywords_write_the_same_tree(tmp_path):
    spec = SyntheticSpec(num_train=2, num_val=1, seed=4, context=1.0)
    write_synthetic_voc(tmp_path / "spec", spec)
    write_synthetic_voc(
        tmp_path / "mixed", SyntheticSpec(num_train=2), num_val=1, seed=4, context=1
    )
    write_synthetic_voc(tmp_path / "keywords", num_train=2, num_val=1, seed=4, context=1.0)
    digests = {_tree_digests(tmp_path / name) for name in ("spec", "mixed", "keywords")}
    assert len(digests) == 1
    with pytest.raises(TypeError, match="SyntheticSpec"):
        write_synthetic_voc(tmp_path / "positional", 2)
    with pytest.raises(TypeError):
        write_synthetic_voc(tmp_path / "unknown", num_images=2)


@pytest.mark.parametrize("datamodule", [SyntheticVOCDataModule, SyntheticCityscapesDataModule])
def test_datamodule_arguments_are_unchanged(datamodule):
    """Recipes set ``data.init_args.<name>``; jsonargparse reads this signature."""
    params = inspect.signature(datamodule.__init__).parameters
    assert [(p.name, p.annotation, p.default) for p in params.values()] == [
        ("self", inspect.Parameter.empty, inspect.Parameter.empty),
        ("root", "str | None", None),
        ("num_train", "int", 160),
        ("num_val", "int", 40),
        ("seed", "int", 0),
        ("fine_structure", "float", 0.0),
        ("context", "float", 0.0),
        ("scale_variation", "float", 0.0),
        ("context_cue_share", "float", 0.65),
        ("min_size", "int", 57),
        ("max_size", "int", 131),
        ("crop_size", "int | tuple[int, int]", 64),
        ("scale_range", "tuple[float, float]", (0.75, 1.5)),
        ("num_workers", "int", 0),
        ("kwargs", inspect.Parameter.empty, inspect.Parameter.empty),
    ]
