"""Cityscapes: the labelId -> trainId mapping id by id, the reader, and its bad-data errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from seglit.data import (
    CITYSCAPES_CLASSES,
    CITYSCAPES_PALETTE,
    CityscapesDataModule,
    CityscapesDataset,
    SyntheticCityscapesDataModule,
    label_ids_to_train_ids,
    train_ids_to_label_ids,
    write_synthetic_cityscapes,
)
from seglit.data.synthetic import SYNTHETIC_CITYSCAPES_IDS

# cityscapesScripts helpers/labels.py: the labelIds of trainIds 0..18, in order.
EVALUATED_IDS = [7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33]


@pytest.fixture(scope="module")
def cityscapes_root(tmp_path_factory):
    return write_synthetic_cityscapes(tmp_path_factory.mktemp("cs"), num_train=4, num_val=3)


def test_label_id_to_train_id_for_every_id():
    label_ids = np.arange(256, dtype=np.uint8).reshape(16, 16)
    train_ids = label_ids_to_train_ids(label_ids)
    for label_id, train_id in zip(label_ids.flat, train_ids.flat):
        expected = EVALUATED_IDS.index(label_id) if label_id in EVALUATED_IDS else 255
        assert train_id == expected, f"labelId {label_id}"


def test_train_id_to_label_id_for_submissions():
    train_ids = np.arange(19, dtype=np.uint8)
    assert train_ids_to_label_ids(train_ids).tolist() == EVALUATED_IDS
    assert train_ids_to_label_ids(np.array([255], dtype=np.uint8)).tolist() == [0]
    assert (label_ids_to_train_ids(train_ids_to_label_ids(train_ids)) == train_ids).all()


def test_names_and_official_colours():
    assert len(CITYSCAPES_CLASSES) == 19 == len(CITYSCAPES_PALETTE)
    assert CITYSCAPES_CLASSES[0] == "road" and CITYSCAPES_CLASSES[18] == "bicycle"
    assert CITYSCAPES_PALETTE[0] == (128, 64, 128) and CITYSCAPES_PALETTE[13] == (0, 0, 142)
    dm = CityscapesDataModule(root="unused")
    assert dm.num_classes == 19 and dm.class_names == list(CITYSCAPES_CLASSES)
    assert dm.crop_size == (512, 1024)


def test_synthetic_layout_has_label_ids_including_ignored_ones(cityscapes_root):
    train = sorted((cityscapes_root / "leftImg8bit" / "train").glob("*/*_leftImg8bit.png"))
    labels = sorted((cityscapes_root / "gtFine" / "train").glob("*/*_gtFine_labelIds.png"))
    assert len(train) == len(labels) == 4
    values = set()
    for path in labels:
        with Image.open(path) as img:
            assert img.mode == "L"
            values |= set(np.unique(np.array(img)).tolist())
    assert values & {0, 1, 9}, "ids that map to 255 are present"
    assert values <= set(SYNTHETIC_CITYSCAPES_IDS) | {0, 1, 9}


def test_reader_maps_label_ids_like_torchvision_reads_them(cityscapes_root):
    from torchvision.datasets import Cityscapes

    ours = CityscapesDataset(cityscapes_root, "train")
    reference = Cityscapes(str(cityscapes_root), split="train", target_type="semantic")
    by_name = {
        p.split("/")[-1][: -len("_leftImg8bit.png")]: i for i, p in enumerate(reference.images)
    }
    assert sorted(by_name) == sorted(ours.names)
    for index, name in enumerate(ours.names):
        sample = ours[index]
        ref_image, ref_label_ids = reference[by_name[name]]
        np.testing.assert_array_equal(sample["image"], np.array(ref_image))
        expected = label_ids_to_train_ids(np.array(ref_label_ids))
        np.testing.assert_array_equal(sample["mask"], expected)
        assert set(np.unique(sample["mask"]).tolist()) <= {0, 2, 7, 8, 13, 255}


def test_datamodule_batches(cityscapes_root):
    dm = SyntheticCityscapesDataModule(root=str(cityscapes_root), num_train=4, num_val=3)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].shape[-2:] == (64, 64) and batch["mask"].max() <= 255
    batch = next(iter(dm.val_dataloader()))
    assert batch["mask"].shape[-2:] == batch["image"].shape[-2:]


@pytest.fixture
def cs_copy(cityscapes_root, tmp_path):
    import shutil

    shutil.copytree(cityscapes_root, tmp_path / "cs")
    return tmp_path / "cs"


def test_missing_split_folder(cs_copy):
    with pytest.raises(FileNotFoundError, match=r"leftImg8bit/test not found .*train, val"):
        CityscapesDataset(cs_copy, "test")


def test_empty_split(cs_copy):
    (cs_copy / "leftImg8bit" / "test").mkdir()
    with pytest.raises(ValueError, match="holds no"):
        CityscapesDataset(cs_copy, "test")


def test_image_without_label(cs_copy):
    label = sorted((cs_copy / "gtFine" / "val").glob("*/*_labelIds.png"))[0]
    label.unlink()
    with pytest.raises(FileNotFoundError, match=label.name):
        CityscapesDataset(cs_copy, "val")


def test_label_id_out_of_range(cs_copy):
    dataset = CityscapesDataset(cs_copy, "val")
    values = np.array(Image.open(dataset.masks[0]))
    values[0, 0] = 34
    Image.fromarray(values, mode="L").save(dataset.masks[0])
    with pytest.raises(ValueError, match=rf"{dataset.masks[0].name} holds values \[34\]"):
        dataset.read(0)


# ------------------------------------------------- against cityscapesScripts, the official tools


def test_label_table_is_cityscapesscripts_own():
    labels = pytest.importorskip(
        "cityscapesscripts.helpers.labels", reason="cityscapesscripts (the dev extra) is absent"
    )
    from seglit.data.cityscapes import CITYSCAPES_LABELS

    official = [(lab.name, lab.id, lab.trainId, lab.color) for lab in labels.labels if lab.id >= 0]
    ours = [(lab.name, lab.id, lab.train_id, lab.color) for lab in CITYSCAPES_LABELS]
    assert ours == official
    evaluated = [lab.id for lab in sorted(labels.labels, key=lambda x: x.trainId)]
    assert [i for i in evaluated if not labels.id2label[i].ignoreInEval] == EVALUATED_IDS


def _in_repo_official_miou(predictions: list[Path], ground_truths: list[Path]) -> float:
    """cityscapesScripts' ``evalPixelLevelSemanticLabeling`` restated on labelId PNGs.

    A labelId confusion matrix over all pixels; for each evaluated label, FN = its GT row
    minus TP (whatever was predicted there), FP = its predicted column over the GT rows of
    evaluated labels only (ignored GT ids never make a false positive); the mean skips labels
    with an empty union.
    """
    confusion = np.zeros((256, 256), dtype=np.int64)
    for prediction, ground_truth in zip(predictions, ground_truths):
        pred = np.array(Image.open(prediction)).astype(np.int64)
        gt = np.array(Image.open(ground_truth)).astype(np.int64)
        np.add.at(confusion, (gt.ravel(), pred.ravel()), 1)
    scores = []
    for label in EVALUATED_IDS:
        tp = confusion[label, label]
        fn = confusion[label].sum() - tp
        fp = confusion[[i for i in EVALUATED_IDS if i != label], label].sum()
        if tp + fp + fn:
            scores.append(tp / (tp + fp + fn))
    return float(np.mean(scores))


def _cityscapesscripts_miou(predictions: list[Path], ground_truths: list[Path]) -> float:
    evaluation = pytest.importorskip(
        "cityscapesscripts.evaluation.evalPixelLevelSemanticLabeling",
        reason="cityscapesscripts (the dev extra) is absent",
    )
    args = evaluation.CArgs()
    vars(args).update(vars(evaluation.args))
    args.evalInstLevelScore = False  # the instance-weighted score needs *_instanceIds.png
    args.JSONOutput = False
    args.quiet = True
    result = evaluation.evaluateImgLists(
        [str(p) for p in predictions], [str(p) for p in ground_truths], args
    )
    return result["averageScoreClasses"]


@pytest.mark.parametrize("reference", [_cityscapesscripts_miou, _in_repo_official_miou])
def test_miou_is_the_official_evaluation_s(reference, cityscapes_root, tmp_path):
    """seglit's mIoU of trainId predictions read back through ``CityscapesDataset`` equals the
    official evaluation of the same predictions written as labelId PNGs (what the test server
    takes), against the untouched ``*_gtFine_labelIds.png``: the mapping, the ignored ids
    (0, 1 and 9 are in the lab's labels) and the mean over non-empty classes agree."""
    import torch

    from seglit.metrics import SegmentationMetrics

    dataset = CityscapesDataset(cityscapes_root, "val")
    rng = np.random.default_rng(0)
    metric = SegmentationMetrics(num_classes=19)
    predictions = []
    for index in range(len(dataset)):
        mask = dataset[index]["mask"]
        pred = np.where(mask == 255, rng.integers(0, 19, mask.shape), mask)
        wrong = rng.random(mask.shape) < 0.3  # ~30% wrong, into classes the GT does not have
        pred = np.where(wrong, rng.integers(0, 19, mask.shape), pred).astype(np.uint8)
        metric.update(torch.from_numpy(pred)[None], torch.from_numpy(mask.astype(np.int64))[None])
        predictions.append(tmp_path / f"{index}_labelIds.png")
        Image.fromarray(train_ids_to_label_ids(pred), mode="L").save(predictions[-1])
    official = reference(predictions, list(dataset.masks))
    ours = metric.compute()["mIoU"].item()
    assert 0.1 < official < 0.9
    assert ours == pytest.approx(official, abs=1e-6)
