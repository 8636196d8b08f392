"""The synthetic dataset: real VOC layout, palette masks, determinism, caching and the lab."""

from __future__ import annotations

import hashlib
import inspect
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from seglit.data.cityscapes import CityscapesDataset
from seglit.data.datamodules import (
    SyntheticCityscapesDataModule,
    SyntheticFarCueDataModule,
    SyntheticVOCDataModule,
)
from seglit.data.palette import voc_palette
from seglit.data.synthetic import (
    MARKER_NAME,
    SyntheticSpec,
    write_synthetic_cityscapes,
    write_synthetic_voc,
)
from seglit.data.synthetic_lab import _FAR_BAND_WIDTH, FAR_CUE_DISTANCE, LAB_FACTORS, describe_lab
from seglit.data.synthetic_render import (
    _CUE_COLOURS,
    SYNTHETIC_CLASSES,
    _cue_background,
    render_sample,
)
from seglit.data.voc import VOCSegmentationDataset


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


# --- The synthetic lab -------------------------------------------------------------------------

LAB = tuple(LAB_FACTORS)
# The factors the generic synthetic datamodules take (far_cue has its own datamodule, whose
# defaults keep its geometry: SyntheticFarCueDataModule).
DM_LAB = tuple(f for f in LAB if f in inspect.signature(SyntheticVOCDataModule).parameters)
SMALL = {"num_train": 3, "num_val": 2}

# sha256 of render_sample's (image, label) arrays for seeds 0 and 1, images 0..5, recorded with
# the generator as it was before the lab existed: every lab factor at 0 must keep it.
ORIGINAL_SAMPLES_SHA256 = "c971babfc7f7959710472615a5831fa48d300ebff46bd2af9f4d360b31ea4242"

# Synthetic class -> Cityscapes trainId after the labelIds mapping (road, car, building, sign,
# vegetation).
CITYSCAPES_TRAIN_IDS = (0, 13, 2, 7, 8)


def _files(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _images(root):
    """The JPEG bytes of a synthetic VOC tree, image by image."""
    return [p.read_bytes() for p in sorted((_voc(root) / "JPEGImages").glob("*.jpg"))]


def _read_voc(root):
    """Every (image, mask) of both splits, read by the VOC reader real data goes through."""
    samples = []
    for split in ("train", "val"):
        dataset = VOCSegmentationDataset(root, split, num_classes=len(SYNTHETIC_CLASSES))
        samples += [dataset.read(i) for i in range(len(dataset))]
    return samples


def _read_cityscapes(root):
    samples = []
    for split in ("train", "val"):
        dataset = CityscapesDataset(root, split)
        samples += [dataset.read(i) for i in range(len(dataset))]
    return samples


def test_lab_off_renders_the_original_samples():
    digest = hashlib.sha256()
    for seed in (0, 1):
        for index in range(6):
            image, label = render_sample(np.random.default_rng([seed, index]))
            digest.update(image.tobytes())
            digest.update(label.tobytes())
            digest.update(repr(image.shape).encode())
    assert digest.hexdigest() == ORIGINAL_SAMPLES_SHA256


@pytest.mark.parametrize("writer", [write_synthetic_voc, write_synthetic_cityscapes])
def test_lab_factors_at_zero_write_the_original_files(tmp_path, writer):
    default = writer(tmp_path / "default", **SMALL, seed=5)
    zero = writer(tmp_path / "zero", **SMALL, seed=5, **dict.fromkeys(LAB, 0.0))
    assert _files(default) == _files(zero)
    marker = next(default.rglob(MARKER_NAME))
    assert not set(json.loads(marker.read_text())) & set(LAB), "no lab keys: old caches stay valid"
    if writer is write_synthetic_voc:  # the masks are exactly render_sample's labels
        for index, (_, mask) in enumerate(_read_voc(default)):
            label = render_sample(np.random.default_rng([5, index]))[1]
            assert np.array_equal(mask, label)


def test_datamodule_cache_root_without_lab_is_unchanged(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGLIT_CACHE", str(tmp_path))
    key = json.dumps({"num_train": 3, "num_val": 2, "seed": 0}, sort_keys=True).encode()
    expected = str(tmp_path / f"synthetic_voc-{hashlib.sha1(key).hexdigest()[:10]}")
    assert SyntheticVOCDataModule(**SMALL).root == expected
    assert SyntheticVOCDataModule(**SMALL, **dict.fromkeys(DM_LAB, 0.0)).root == expected
    assert SyntheticVOCDataModule(**SMALL, min_size=57, max_size=131).root == expected


@pytest.mark.parametrize("factor", LAB)
def test_lab_factor_is_deterministic_recorded_and_never_reused(tmp_path, factor):
    a = write_synthetic_voc(tmp_path / "a", **SMALL, seed=3, **{factor: 1.0})
    b = write_synthetic_voc(tmp_path / "b", **SMALL, seed=3, **{factor: 1.0})
    assert _files(a) == _files(b)
    others = {
        "other seed": write_synthetic_voc(tmp_path / "c", **SMALL, seed=4, **{factor: 1.0}),
        "other strength": write_synthetic_voc(tmp_path / "d", **SMALL, seed=3, **{factor: 0.5}),
        "factor off": write_synthetic_voc(tmp_path / "e", **SMALL, seed=3),
    }
    for name, other in others.items():
        assert _images(other) != _images(a), name
    assert json.loads((_voc(a) / MARKER_NAME).read_text())[factor] == 1.0
    with pytest.raises(FileExistsError, match="overwrite=True"):  # a cache of 1.0 is not 0.5
        write_synthetic_voc(a, **SMALL, seed=3, **{factor: 0.5})
    for image_array, mask in _read_voc(a):  # the VOC reader accepts it
        assert image_array.shape[:2] == mask.shape and 57 <= min(mask.shape)
        assert set(np.unique(mask)) <= set(range(len(SYNTHETIC_CLASSES))) | {255}


@pytest.mark.parametrize("factor", LAB)
def test_lab_factor_in_the_cityscapes_layout(tmp_path, factor):
    a = write_synthetic_cityscapes(tmp_path / "a", **SMALL, seed=2, **{factor: 1.0})
    b = write_synthetic_cityscapes(tmp_path / "b", **SMALL, seed=2, **{factor: 1.0})
    c = write_synthetic_cityscapes(tmp_path / "c", **SMALL, seed=2)
    assert _files(a) == _files(b) and _files(a) != _files(c)
    assert json.loads((a / "gtFine" / MARKER_NAME).read_text())[factor] == 1.0
    samples = _read_cityscapes(a)
    assert len(samples) == 5
    for image, mask in samples:
        assert image.shape[:2] == mask.shape
        assert set(np.unique(mask)) <= set(CITYSCAPES_TRAIN_IDS) | {255}


@pytest.mark.parametrize("datamodule", [SyntheticVOCDataModule, SyntheticCityscapesDataModule])
def test_datamodule_lab_factors_give_their_own_cache_roots(tmp_path, monkeypatch, datamodule):
    monkeypatch.setenv("SEGLIT_CACHE", str(tmp_path))
    settings = [{}] + [{factor: s} for factor in DM_LAB for s in (0.5, 1.0)]
    settings += [dict.fromkeys(DM_LAB, 1.0), {"min_size": 96, "max_size": 160}]
    roots = [datamodule(**SMALL, **kwargs).root for kwargs in settings]
    assert len(set(roots)) == len(roots)
    dm = datamodule(**SMALL, fine_structure=0.5, batch_size=2)
    assert dm.generator_args == {**SMALL, "seed": 0, "fine_structure": 0.5}
    dm.setup("fit")  # generates into its own root and reads it back
    assert json.loads(next(Path(dm.root).rglob(MARKER_NAME)).read_text())["fine_structure"] == 0.5
    assert len(dm.train_dataset) == 3 and len(dm.val_dataset) == 2


@pytest.mark.parametrize("value", [-0.1, 1.5, float("nan"), "1", True])
def test_lab_strength_out_of_range_is_an_error(tmp_path, value):
    with pytest.raises(ValueError, match="context"):
        write_synthetic_voc(tmp_path, **SMALL, context=value)
    with pytest.raises(ValueError, match="context"):
        SyntheticVOCDataModule(**SMALL, context=value)


def test_factors_combine(tmp_path):
    both = write_synthetic_voc(tmp_path / "all", **SMALL, **dict.fromkeys(LAB, 1.0))
    marker = json.loads((_voc(both) / MARKER_NAME).read_text())
    assert {k: marker[k] for k in LAB} == dict.fromkeys(LAB, 1.0)
    for factor in LAB:
        single = write_synthetic_voc(tmp_path / factor, **SMALL, **{factor: 1.0})
        assert _images(single) != _images(both)
    assert len(_read_voc(both)) == 5


def test_command_line_lab_flags(tmp_path):
    from seglit.data.__main__ import main

    argv = ["synthetic", "voc", "--root", str(tmp_path), "--num-train", "2", "--num-val", "1"]
    assert (
        main([*argv, "--fine-structure", "0.5", "--context", "1", "--scale-variation", "0.25"]) == 0
    )
    marker = json.loads((_voc(tmp_path) / MARKER_NAME).read_text())
    assert (marker["fine_structure"], marker["context"], marker["scale_variation"]) == (
        0.5,
        1.0,
        0.25,
    )
    assert main([*argv, "--context", "2"]) == 2  # out of range: one error line


def test_docs_show_the_lab_table():
    docs = (Path(__file__).resolve().parents[2] / "docs" / "datasets.md").read_text()
    assert describe_lab() in docs, "docs/datasets.md: paste describe_lab()'s table"
    for factor in LAB:
        assert (
            f"`{factor}`" in docs
            and (
                Path(__file__).resolve().parents[2] / "docs" / "img" / f"lab_{factor}.png"
            ).is_file()
        )


# --- Each factor does what it says, measured on the label maps and images read back ------------


def _lab_voc(root, seed=0, num_train=16, num_val=8, **factors):
    write_synthetic_voc(root, num_train=num_train, num_val=num_val, seed=seed, **factors)
    return _read_voc(root)


@pytest.fixture(scope="module")
def lab_data(tmp_path_factory):
    """24 VOC-layout samples (seed 0) per setting, read back from disk."""
    cache = {}

    def get(**factors):
        key = tuple(sorted(factors.items()))
        if key not in cache:
            cache[key] = _lab_voc(tmp_path_factory.mktemp("lab"), **factors)
        return cache[key]

    return get


def _thin_share(masks) -> float:
    """Share of foreground pixels in structures narrower than 5 px: the pixels a binary opening
    with a 5x5 square removes from their class."""
    thin = total = 0
    for mask in masks:
        for c in range(1, len(SYNTHETIC_CLASSES)):
            m = mask == c
            total += m.sum()
            thin += (m & ~ndimage.binary_opening(m, structure=np.ones((5, 5), bool))).sum()
    return thin / total


def _oracle_miou(masks, stride: int) -> float:
    """mIoU of the best a network scoring at ``stride`` can do without learnt upsampling: each
    stride x stride block takes its most frequent label (void ignored), upsampled nearest."""
    k = len(SYNTHETIC_CLASSES)
    confusion = np.zeros((k, k), dtype=np.int64)
    for mask in masks:
        h, w = mask.shape
        gh, gw = -(-h // stride), -(-w // stride)
        padded = np.full((gh * stride, gw * stride), 255, dtype=np.uint8)
        padded[:h, :w] = mask
        blocks = padded.reshape(gh, stride, gw, stride).transpose(0, 2, 1, 3)
        votes = np.stack([(blocks == c).sum(axis=(2, 3)) for c in range(k)], axis=-1)
        coarse = votes.argmax(axis=-1)
        pred = np.kron(coarse, np.ones((stride, stride), dtype=int))[:h, :w]
        valid = mask != 255
        confusion += np.bincount(
            mask[valid].astype(int) * k + pred[valid], minlength=k * k
        ).reshape(k, k)
    tp = np.diag(confusion)
    return float(np.mean(tp / (confusion.sum(0) + confusion.sum(1) - tp)))


def test_fine_structure_is_thin_and_labelled(lab_data):
    off = [m for _, m in lab_data()]
    fine = [m for _, m in lab_data(fine_structure=1.0)]
    half = [m for _, m in lab_data(fine_structure=0.5)]
    print("thin share 0 / 0.5 / 1:", _thin_share(off), _thin_share(half), _thin_share(fine))
    assert _thin_share(off) < 0.03
    assert _thin_share(half) > 0.12
    assert _thin_share(fine) > 0.3  # kept their class: not swallowed by the void band
    # The band still keeps different classes apart (4-neighbours never touch).
    for m in fine:
        m = m.astype(int)
        for a, b in ((m[1:], m[:-1]), (m[:, 1:], m[:, :-1])):
            assert not ((a != b) & (a != 255) & (b != 255)).any()


def test_fine_structure_needs_full_resolution(lab_data):
    off = [m for _, m in lab_data()]
    fine = [m for _, m in lab_data(fine_structure=1.0)]
    miou = {s: (_oracle_miou(off, s), _oracle_miou(fine, s)) for s in (8, 32)}
    print("oracle mIoU (off, fine) by stride:", miou)
    assert miou[32][1] < miou[32][0] - 0.05  # stride 32 (FCN-32s) loses more
    assert miou[8][0] > 0.85 and miou[8][1] < miou[8][0] - 0.15  # even stride 8 loses much


def _window_features(samples, r):
    """For pixels at distance > r from their object's edge (every 5th): mean and std colour of
    the (2r+1)-window around them, the image's background colour-family shares, the class."""
    local, cue, classes, image_ids = [], [], [], []
    k = 2 * r + 1
    for image_id, (image, mask) in enumerate(samples):
        image = image.astype(np.float64)
        mean = ndimage.uniform_filter(image, size=(k, k, 1))
        std = np.sqrt(np.maximum(ndimage.uniform_filter(image**2, size=(k, k, 1)) - mean**2, 0))
        background = _cue_family_shares(image[mask == 0])
        for c in range(1, len(SYNTHETIC_CLASSES)):
            inside = ndimage.distance_transform_edt(mask == c) > r
            ys, xs = np.nonzero(inside)
            ys, xs = ys[::5], xs[::5]
            local.append(np.concatenate([mean[ys, xs], std[ys, xs]], axis=1))
            cue.append(np.tile(background, (len(ys), 1)))
            classes += [c] * len(ys)
            image_ids += [image_id] * len(ys)
    return np.concatenate(local), np.concatenate(cue), np.array(classes), np.array(image_ids)


def _cue_family_shares(pixels):
    """Share of the given RGB pixels whose chromaticity is nearest each cue colour family."""
    families = np.array([_CUE_COLOURS[c] for c in sorted(_CUE_COLOURS)], dtype=np.float64)
    families /= families.sum(axis=1, keepdims=True)
    chroma = pixels / np.maximum(pixels.sum(axis=1, keepdims=True), 1.0)
    nearest = ((chroma[:, None] - families[None]) ** 2).sum(-1).argmin(1)
    return np.bincount(nearest, minlength=len(families)) / len(pixels)


def _nearest_centroid_accuracy(features, classes, train):
    """Balanced accuracy on ``~train`` of a nearest-centroid classifier fit on ``train``."""
    mu, sd = features[train].mean(0), features[train].std(0) + 1e-9
    z = (features - mu) / sd
    labels = np.unique(classes[train])
    centroids = np.stack([z[train & (classes == c)].mean(0) for c in labels])
    pred = labels[((z[~train, None] - centroids[None]) ** 2).sum(-1).argmin(1)]
    truth = classes[~train]
    return float(np.mean([np.mean(pred[truth == c] == c) for c in labels if (truth == c).any()]))


def test_context_class_is_not_local_but_image_level(tmp_path):
    r = 6
    results = {}
    for strength in (0.0, 1.0):
        samples = _lab_voc(tmp_path / str(strength), num_train=32, num_val=32, context=strength)
        local, cue, classes, image_ids = _window_features(samples, r)
        train = image_ids < 32  # fit on the train split, score on val
        assert len(np.unique(classes[~train])) == 4
        results[strength] = (
            _nearest_centroid_accuracy(local, classes, train),
            _nearest_centroid_accuracy(cue, classes, train),
        )
        if strength:  # the cue (the background) always keeps a good part of the image
            assert all((mask == 0).mean() > 0.3 for _, mask in samples)
    print("balanced accuracy (window stats, background cue):", results)
    assert results[0.0][0] > 0.95  # without the factor a small window tells the class ...
    assert results[0.0][1] < 0.4  # ... and the background does not
    # With it the window is near chance (0.25; 32 val images, one cue class each, spread it) ...
    assert results[1.0][0] < 0.35
    assert results[1.0][1] > 0.97  # ... and the image-level colour-family shares tell it


@pytest.mark.parametrize("share", [0.65, 0.8, 1.0])
def test_context_cue_share_is_the_cue_colours_share_of_the_background(tmp_path, share):
    """The same scenes (labels) with the cue's colour family on ``share`` of the background;
    at 1 it touches every object, the control of a context ablation."""
    samples = _lab_voc(tmp_path / "s", num_train=6, num_val=2, context=1.0, context_cue_share=share)
    default = _lab_voc(tmp_path / "d", num_train=6, num_val=2, context=1.0)
    for (image, mask), (default_image, default_mask) in zip(samples, default, strict=True):
        assert np.array_equal(mask, default_mask)
        shares = _cue_family_shares(image[mask == 0].astype(np.float64))
        assert shares.max() == pytest.approx(share, abs=0.06)
        assert (share == 0.65) == np.array_equal(image, default_image)


def test_a_cue_share_of_one_colours_every_background_pixel():
    rng = np.random.default_rng(0)
    image = rng.uniform(50, 200, (40, 50, 3)).astype(np.float32)
    visible = rng.random((40, 50)) < 0.5
    out = _cue_background(np.random.default_rng(1), image, 2, visible, 1.0)
    tint = out / image.mean(axis=2, keepdims=True)  # brightness kept, one tint per family
    cue = np.asarray(_CUE_COLOURS[2], dtype=np.float32)
    assert np.allclose(tint, tint[0, 0], atol=1e-5)  # every pixel, visible or not
    assert np.allclose(tint[0, 0], cue / cue.mean(), atol=0.15)  # the cue's (jittered) colour
    mixed = _cue_background(np.random.default_rng(1), image, 2, visible, 0.65)
    tints = (mixed / image.mean(axis=2, keepdims=True)).reshape(-1, 3).round(4)
    assert len(np.unique(tints, axis=0)) == 2  # the cue's and a decoy's


def test_context_cue_share_is_recorded_and_checked(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGLIT_CACHE", str(tmp_path / "cache"))
    default = SyntheticVOCDataModule(**SMALL, context=1.0)
    control = SyntheticVOCDataModule(**SMALL, context=1.0, context_cue_share=1.0)
    assert "context_cue_share" not in default.generator_args  # old cache keys hold
    assert control.generator_args["context_cue_share"] == 1.0 and control.root != default.root
    # Without the context factor the share changes nothing, so it is not in the key either.
    assert SyntheticVOCDataModule(**SMALL, context_cue_share=1.0).generator_args == {
        **SMALL,
        "seed": 0,
    }
    root = write_synthetic_voc(tmp_path / "c", **SMALL, context=1.0, context_cue_share=0.8)
    assert json.loads((_voc(root) / MARKER_NAME).read_text())["context_cue_share"] == 0.8
    with pytest.raises(FileExistsError, match="overwrite=True"):
        write_synthetic_voc(root, **SMALL, context=1.0)
    for bad in (0.5, 1.2, "1", True):
        with pytest.raises(ValueError, match=r"context_cue_share must be a number in \(0.5, 1\]"):
            SyntheticVOCDataModule(**SMALL, context=1.0, context_cue_share=bad)

    from seglit.data.__main__ import main

    argv = ["synthetic", "voc", "--root", str(tmp_path / "cli"), "--num-train", "2"]
    assert main([*argv, "--num-val", "1", "--context", "1", "--context-cue-share", "1"]) == 0
    marker = json.loads((_voc(tmp_path / "cli") / MARKER_NAME).read_text())
    assert marker["context_cue_share"] == 1.0


def _component_areas(samples):
    """Per class, the pixel areas of its connected regions (4-connected, void excluded)."""
    areas = {c: [] for c in range(1, len(SYNTHETIC_CLASSES))}
    for _, mask in samples:
        for c in areas:
            regions, count = ndimage.label(mask == c)
            areas[c] += np.bincount(regions.ravel())[1:].tolist()
    return areas


def test_scale_variation_spans_sizes(tmp_path):
    # One object per image (no occlusion fragments) and one image size: the spread of the
    # areas is the spread of the object sizes.
    fixed = {"min_size": 96, "max_size": 96, "max_objects": 1}
    spans = {}
    for strength in (0.0, 1.0):
        root = tmp_path / str(strength)
        areas = _component_areas(_lab_voc(root, num_train=56, scale_variation=strength, **fixed))
        spans[strength] = {c: np.percentile(a, 90) / np.percentile(a, 10) for c, a in areas.items()}
    print("per-class p90/p10 area ratio:", spans)
    assert all(span < 8 for span in spans[0.0].values())
    assert all(span > 32 for span in spans[1.0].values())


# --- far_cue: the class is told only by a band cue_distance px away ----------------------------

FAR_SIZES = {"min_size": 120, "max_size": 128}


def _chroma(colour: np.ndarray) -> np.ndarray:
    """A colour (or a mean colour) less its grey level: what tells the colour families apart."""
    return colour - colour.mean(-1, keepdims=True)


def _far_cue_samples(distance: int, count: int = 12):
    for index in range(count):
        yield render_sample(
            np.random.default_rng([0, index]),
            SyntheticSpec(**FAR_SIZES, far_cue=1.0, cue_distance=distance),
            lab_rng=np.random.default_rng([0, index, 99]),
        )


@pytest.mark.parametrize("distance", [FAR_CUE_DISTANCE, 2])
def test_far_cue_band_lies_at_the_distance_in_the_class_colour(distance):
    sides = []
    boxes = 0
    for image, label in _far_cue_samples(distance):
        image = image.astype(np.float64)
        classes = [c for c in range(1, len(SYNTHETIC_CLASSES)) if (label == c).any()]
        assert classes, "every 120-128 px image holds at least one far-cue box"
        for c in classes:  # one box per class: its interior, then its extent (1 px void edge)
            (rows, cols), *others = ndimage.find_objects((label == c).astype(int))
            assert not others
            rows = slice(rows.start - 1, rows.stop + 1)
            x0, x1 = cols.start - 1, cols.stop + 1
            assert 8 <= x1 - x0 <= 16 and 20 <= rows.stop - rows.start <= 32
            # grey: the box's own pixels say nothing of its class
            assert np.abs(_chroma(image[rows, x0:x1].mean((0, 1)))).max() < 12
            cue = _chroma(np.asarray(_CUE_COLOURS[c], dtype=np.float64))
            band = {
                "left": (x0 - distance - _FAR_BAND_WIDTH, x0 - distance),
                "right": (x1 + distance, x1 + distance + _FAR_BAND_WIDTH),
            }
            found = []
            for side, (start, stop) in band.items():
                if start < 0 or stop > label.shape[1]:
                    continue
                columns = _chroma(image[rows, start:stop].mean(0))  # mean colour per column
                if np.abs(columns - cue).max() < 20:
                    found.append(side)
                    assert (label[rows, start:stop] == 0).all()  # a cue, not an object
                    for x in (start - 1, stop):  # the band starts and ends where it says
                        if 0 <= x < label.shape[1]:
                            assert np.abs(_chroma(image[rows, x].mean(0)) - cue).max() > 20
            assert len(found) == 1, (c, found)
            sides += found
            boxes += 1
    assert boxes >= 20 and {"left", "right"} == set(sides)


def test_far_cue_checks_its_distance():
    SyntheticSpec(far_cue=1.0, **FAR_SIZES).check()
    with pytest.raises(ValueError, match="cue_distance=100 does not fit.*max_size is 128"):
        SyntheticSpec(far_cue=1.0, cue_distance=100, **FAR_SIZES).check()
    for bad in (0, 2.5, True):
        with pytest.raises(ValueError, match="cue_distance must be an int >= 1"):
            SyntheticSpec(far_cue=1.0, cue_distance=bad).check()
    # without the factor the distance draws nothing, so it is not in the key either
    assert SyntheticSpec(cue_distance=100).cache_key() == SyntheticSpec().cache_key()


def test_far_cue_datamodule_keys_and_reads_back(tmp_path, monkeypatch):
    monkeypatch.setenv("SEGLIT_CACHE", str(tmp_path))
    lab = SyntheticFarCueDataModule(**SMALL, batch_size=2)
    assert lab.generator_args == {**SMALL, "seed": 0, **FAR_SIZES, "far_cue": 1.0}
    control = SyntheticFarCueDataModule(**SMALL, cue_distance=2)
    assert control.generator_args["cue_distance"] == 2 and control.root != lab.root
    off = SyntheticFarCueDataModule(**SMALL, far_cue=0.0)
    assert off.root == SyntheticVOCDataModule(**SMALL, **FAR_SIZES).root
    with pytest.raises(ValueError, match="cue_distance=200 does not fit"):
        SyntheticFarCueDataModule(**SMALL, cue_distance=200)
    lab.setup("fit")
    marker = json.loads(next(Path(lab.root).rglob(MARKER_NAME)).read_text())
    assert marker["far_cue"] == 1.0 and "cue_distance" not in marker
    assert len(lab.train_dataset) == 3 and len(lab.val_dataset) == 2


def test_variants_started_side_by_side_share_one_generation(tmp_path):
    """Two processes writing the same cache: one generates, the other finds its tree (the
    runner's parallel smoke variants did race here: "Directory not empty")."""
    import functools
    import multiprocessing

    from seglit.data.synthetic import write_synthetic_voc

    context = multiprocessing.get_context("spawn")  # a seglit function: importable there
    for attempt in range(2):
        root = str(tmp_path / f"voc{attempt}")
        write = functools.partial(write_synthetic_voc, root, num_train=6, num_val=2)
        workers = [context.Process(target=write) for _ in range(2)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join(120)
        assert [w.exitcode for w in workers] == [0, 0]
        assert len(VOCSegmentationDataset(root, "train", num_classes=5)) == 6
