"""``python -m seglit.data``: SBD and trainaug, Cityscapes conversion, check, download."""

from __future__ import annotations

import shutil
import subprocess
import sys
import urllib.error
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

import seglit.data.download as download_module
import seglit.data.prepare as prepare
from seglit.data.__main__ import main
from seglit.data.cityscapes import CityscapesDataset
from seglit.data.synthetic import write_synthetic_cityscapes
from seglit.data.voc import VOCSegmentationDataset


def _voc(root):
    return root / "VOCdevkit" / "VOC2012"


@pytest.fixture
def voc_with_sbd(voc_copy):
    """The synthetic VOC tree plus a tiny SBD: two new images and one VOC-val image."""
    voc = _voc(voc_copy)
    sbd = voc_copy / "benchmark_RELEASE" / "dataset"
    (sbd / "cls").mkdir(parents=True)
    rng = np.random.default_rng(0)
    masks = {}
    for image_id in ("sbd_a", "sbd_b"):
        Image.fromarray(rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(
            voc / "JPEGImages" / f"{image_id}.jpg"
        )
        masks[image_id] = rng.choice(np.array([0, 1, 4, 255], dtype=np.uint8), size=(20, 30))
        gtcls = {"Segmentation": masks[image_id], "CategoriesPresent": np.array([1, 4])}
        savemat(sbd / "cls" / f"{image_id}.mat", {"GTcls": gtcls})
    voc_val = (voc / "ImageSets/Segmentation/val.txt").read_text().split()
    voc_train = (voc / "ImageSets/Segmentation/train.txt").read_text().split()
    (sbd / "train.txt").write_text(f"{voc_train[1]}\nsbd_a\n")
    (sbd / "val.txt").write_text(f"{voc_val[0]}\nsbd_b\n")
    return voc_copy, masks, voc_train


def test_sbd_mat_masks_and_trainaug(voc_with_sbd, capsys):
    root, masks, voc_train = voc_with_sbd
    ids = prepare.make_trainaug(root)
    assert ids == sorted(voc_train + ["sbd_a", "sbd_b"]), "VOC train + SBD - VOC val"
    # Read straight from the .mat files ...
    dataset = VOCSegmentationDataset(root, "trainaug", num_classes=5)
    index = dataset.names.index("sbd_a")
    assert dataset.masks[index].suffix == ".mat"
    np.testing.assert_array_equal(dataset[index]["mask"], masks["sbd_a"])
    # ... and from the converted palette PNGs, with the same arrays.
    assert main(["prepare", "sbd", "--root", str(root)]) == 1  # 8 ids, not 10,582
    assert "trainaug has 8 ids, expected 10582" in capsys.readouterr().err
    converted = _voc(root) / "SegmentationClassAug" / "sbd_b.png"
    assert Image.open(converted).mode == "P"
    dataset = VOCSegmentationDataset(root, "trainaug", num_classes=5)
    index = dataset.names.index("sbd_b")
    assert dataset.masks[index] == converted
    np.testing.assert_array_equal(dataset[index]["mask"], masks["sbd_b"])


@pytest.mark.parametrize(
    ("segmentation", "problem"),
    [
        (np.array([[0, 256]], dtype=np.uint16), "values outside 0..255"),  # a cast: 0
        (np.array([[0, -1]], dtype=np.int32), "values outside 0..255"),  # a cast: 255
        (np.array([[0.0, 3.7]]), "non-integer values"),
    ],
)
def test_an_sbd_file_with_values_a_cast_would_wrap_is_named(tmp_path, segmentation, problem):
    from seglit.data.voc import read_sbd_mat

    path = tmp_path / "bad.mat"
    savemat(path, {"GTcls": {"Segmentation": segmentation, "CategoriesPresent": np.array([1])}})
    with pytest.raises(ValueError, match=rf"bad.mat: GTcls.Segmentation holds {problem}"):
        read_sbd_mat(path)
    good = tmp_path / "good.mat"
    savemat(good, {"GTcls": {"Segmentation": np.array([[0, 20, 255]], dtype=np.uint16)}})
    assert read_sbd_mat(good).tolist() == [[0, 20, 255]]


def test_cityscapes_conversion_matches_on_the_fly_mapping(tmp_path):
    root = write_synthetic_cityscapes(tmp_path, num_train=2, num_val=2)
    before = CityscapesDataset(root, "val")
    expected = [before.read(i)[1] for i in range(len(before))]
    assert main(["prepare", "cityscapes", "--root", str(root)]) == 1  # counts differ from real
    after = CityscapesDataset(root, "val")
    assert all(m.name.endswith("_labelTrainIds.png") for m in after.masks)
    for index, mask in enumerate(expected):
        np.testing.assert_array_equal(after.read(index)[1], mask)


def _converted(root, dataset):
    """The files ``prepare <dataset>`` writes, by path."""
    if dataset == "sbd":
        return sorted((_voc(root) / "SegmentationClassAug").glob("*"))
    return sorted((root / "gtFine").glob("*/*/*_labelTrainIds.png"))


@pytest.mark.parametrize("dataset", ["sbd", "cityscapes"])
def test_an_interrupted_conversion_leaves_nothing_the_rerun_keeps(
    dataset, voc_with_sbd, tmp_path, monkeypatch
):
    """The converters keep the files that exist; a kill during a write must not leave a
    half-written mask for the next run to keep."""
    if dataset == "sbd":
        root = voc_with_sbd[0]
        convert = prepare.convert_sbd
    else:
        root = write_synthetic_cityscapes(tmp_path / "cs", num_train=2, num_val=2)
        convert = prepare.convert_cityscapes
    clean = tmp_path / "clean"
    shutil.copytree(root, clean)
    convert(clean)
    expected = {p.relative_to(clean): np.array(Image.open(p)) for p in _converted(clean, dataset)}
    assert len(expected) >= 2

    real_save = Image.Image.save
    calls = []

    def killed_on_the_second_file(image, fp, *args, **kwargs):
        calls.append(fp)
        if len(calls) == 2:  # half a PNG, then the kill
            data = b"\x89PNG\r\n\x1a\n" + b"\0" * 16
            if isinstance(fp, (str, Path)):
                Path(fp).write_bytes(data)
            else:
                fp.write(data)
            raise KeyboardInterrupt
        return real_save(image, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", killed_on_the_second_file)
    with pytest.raises(KeyboardInterrupt):
        convert(root)
    assert len(_converted(root, dataset)) == 1, "only the file written whole is there"
    monkeypatch.setattr(Image.Image, "save", real_save)
    assert convert(root) == len(expected) - 1
    found = {p.relative_to(root): np.array(Image.open(p)) for p in _converted(root, dataset)}
    assert found.keys() == expected.keys()
    for name, mask in expected.items():
        np.testing.assert_array_equal(found[name], mask, err_msg=str(name))


def test_cityscapes_conversion_is_cityscapesscripts_own(tmp_path):
    """``prepare cityscapes`` on a labelIds PNG drawn by cityscapesScripts from polygons gives
    the labelTrainIds PNG its ``json2labelImg`` draws from the same polygons (what its
    ``createTrainIdLabelImgs`` writes): overlaps, ignored classes (parking, ego vehicle)
    and the never-drawn license plate included."""
    json2label = pytest.importorskip(
        "cityscapesscripts.preparation.json2labelImg",
        reason="cityscapesscripts (the dev extra) is absent",
    )
    import json

    objects = [
        ("road", [[0, 30], [64, 30], [64, 48], [0, 48]]),
        ("sidewalk", [[0, 24], [20, 24], [30, 40], [0, 40]]),
        ("parking", [[40, 28], [60, 28], [60, 44], [40, 44]]),
        ("building", [[5, 0], [40, 0], [40, 25], [5, 25]]),
        ("sky", [[30, 0], [64, 0], [64, 12], [30, 12]]),
        ("cargroup", [[22, 20], [50, 18], [52, 34], [24, 36]]),
        ("license plate", [[30, 28], [40, 28], [40, 32], [30, 32]]),
        ("ego vehicle", [[0, 44], [64, 44], [64, 48], [0, 48]]),
        ("bicycle", [[50, 14], [58, 14], [58, 22], [50, 22]]),
    ]
    folder = tmp_path / "gtFine" / "val" / "aachen"
    folder.mkdir(parents=True)
    polygons = folder / "aachen_000000_000019_gtFine_polygons.json"
    annotation = {"imgHeight": 48, "imgWidth": 64, "objects": []}
    annotation["objects"] = [{"label": label, "polygon": poly} for label, poly in objects]
    polygons.write_text(json.dumps(annotation))
    json2label.json2labelImg(
        str(polygons), str(folder / "aachen_000000_000019_gtFine_labelIds.png")
    )
    official = tmp_path / "official_labelTrainIds.png"
    json2label.json2labelImg(str(polygons), str(official), "trainIds")

    assert prepare.convert_cityscapes(tmp_path) == 1
    ours = np.array(Image.open(folder / "aachen_000000_000019_gtFine_labelTrainIds.png"))
    theirs = np.array(Image.open(official))
    assert {0, 1, 2, 10, 13, 18, 255} <= set(np.unique(theirs).tolist())
    np.testing.assert_array_equal(ours, theirs)


def test_check_passes_on_good_data(synthetic_voc_root, capsys):
    assert main(["check", "voc", "--root", str(synthetic_voc_root), "--num-classes", "5"]) == 0
    out = capsys.readouterr().out
    assert "train: 6 samples read" in out and "val: 5 samples read" in out


def test_check_lists_every_problem_with_its_file(voc_copy, capsys):
    voc = _voc(voc_copy)
    train = (voc / "ImageSets/Segmentation/train.txt").read_text().split()
    (voc / "JPEGImages" / f"{train[0]}.jpg").write_bytes(b"broken")
    Image.open(voc / "SegmentationClass" / f"{train[1]}.png").convert("RGB").save(
        voc / "SegmentationClass" / f"{train[1]}.png"
    )
    (voc / "ImageSets/Segmentation/val.txt").unlink()
    assert main(["check", "voc", "--root", str(voc_copy)]) == 1
    err = capsys.readouterr().err
    assert f"{train[0]}.jpg" in err and f"{train[1]}.png" in err and "val.txt not found" in err
    assert "3 problems" in err


def test_check_cityscapes_missing_root(tmp_path, capsys):
    assert main(["check", "cityscapes", "--root", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "leftImg8bit/train not found" in err
    assert "2 problems in" in err  # train and val

    write_synthetic_cityscapes(tmp_path / "one", num_train=2, num_val=1)
    next((tmp_path / "one" / "gtFine" / "val").rglob("*_labelIds.png")).write_bytes(b"broken")
    assert main(["check", "cityscapes", "--root", str(tmp_path / "one")]) == 1
    assert "\n1 problem in" in capsys.readouterr().err  # singular


def test_download_without_network_is_one_clear_line(tmp_path, monkeypatch, capsys):
    def refuse(*args, **kwargs):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(download_module.urllib.request, "urlopen", refuse)
    for dataset in ("voc", "sbd"):
        assert main(["prepare", dataset, "--root", str(tmp_path), "--download"]) == 2
        err = capsys.readouterr().err
        assert err.startswith("error: cannot download http") and "network is unreachable" in err
        assert "Traceback" not in err and err.count("\n") == 1
    assert not list(tmp_path.iterdir()), "no partial files left behind"


def test_download_from_unreachable_address_in_a_subprocess(tmp_path):
    code = (
        "import sys, seglit.data.prepare as p; p.VOC_URL = 'http://127.0.0.1:9/VOC.tar'; "
        "from seglit.data.__main__ import main; "
        f"sys.exit(main(['prepare', 'voc', '--root', {str(tmp_path)!r}, '--download']))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.startswith("error: cannot download http://127.0.0.1:9/VOC.tar")
    assert "Traceback" not in result.stderr


def test_cityscapes_download_explains_the_account(tmp_path, capsys):
    assert main(["prepare", "cityscapes", "--root", str(tmp_path), "--download"]) == 2
    assert "cityscapes-dataset.com" in capsys.readouterr().err


def test_download_checks_md5_and_extract(tmp_path, monkeypatch):
    import io
    import tarfile

    payload = io.BytesIO()
    with tarfile.open(fileobj=payload, mode="w") as tar:
        info = tarfile.TarInfo("VOCdevkit/VOC2012/hello.txt")
        info.size = 2
        tar.addfile(info, io.BytesIO(b"hi"))
    data = payload.getvalue()
    monkeypatch.setattr(download_module.urllib.request, "urlopen", lambda *a, **k: io.BytesIO(data))
    with pytest.raises(download_module.DownloadError, match="expected 0000"):
        download_module.download("http://x/a.tar", tmp_path / "a.tar", md5="0000")
    assert not (tmp_path / "a.tar").exists()
    archive = download_module.download("http://x/a.tar", tmp_path / "a.tar")
    download_module.extract(archive, tmp_path)
    assert (tmp_path / "VOCdevkit/VOC2012/hello.txt").read_text() == "hi"


@pytest.mark.parametrize("dataset", ["voc", "cityscapes"])
def test_synthetic_command_then_check(tmp_path, dataset, capsys):
    args = ["--root", str(tmp_path), "--num-train", "2", "--num-val", "1"]
    assert main(["synthetic", dataset, *args]) == 0
    assert main(["check", dataset, "--root", str(tmp_path)]) == 0
    assert main(["synthetic", dataset, *args[:3], "3", "--num-val", "1"]) == 2
    assert "overwrite" in capsys.readouterr().err
    shutil.rmtree(tmp_path)
