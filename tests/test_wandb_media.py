"""W&B media: a real tiny fit logs tables, the confusion matrix and masks to an offline run."""

from __future__ import annotations

import json

import lightning as L
import numpy as np
import pytest
import torch
from PIL import Image
from wandb_records import read_offline_run

from seglit.data import SyntheticVOCDataModule
from seglit.models import UNet
from seglit.module import SegmentationModule
from seglit.wandb.logger import WandbLogger
from seglit.wandb.media import WandbMedia, class_labels, confusion_matrix_chart, pad_samples
from seglit.wandb.offline import find_offline_runs


@pytest.fixture(scope="module")
def fitted_run(tmp_path_factory):
    """One tiny fit (2 epochs, media every epoch) with an offline W&B run; its run folder."""
    tmp = tmp_path_factory.mktemp("media")
    torch.manual_seed(0)
    data = SyntheticVOCDataModule(
        root=str(tmp / "data"), num_train=8, num_val=3, crop_size=32, batch_size=4, num_workers=0
    )
    module = SegmentationModule(
        UNet(num_classes=data.num_classes, base_width=4, depth=2),
        num_classes=data.num_classes,
        class_names=data.class_names,
    )
    trainer = L.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=WandbLogger(mode="offline", save_dir=str(tmp)),
        callbacks=[WandbMedia(num_samples=2)],
        use_distributed_sampler=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=1,
    )
    trainer.fit(module, datamodule=data)  # finishes the W&B run
    (path,) = find_offline_runs(tmp)
    return path.parent, module


def test_fit_logs_tables_confusion_matrix_and_masks(fitted_run):
    run_dir, module = fitted_run
    run = read_offline_run(run_dir, timeout_s=30)
    rows = [row for row in run.history if "val/per_class_iou/_type" in row]
    assert len(rows) == 2, [sorted(r) for r in run.history]  # one per epoch, no sanity check
    for row in rows:
        assert row["val/per_class_iou/_type"] == "table-file"
        assert row["val/per_class_iou/nrows"] == module.num_classes
        assert row["val/confusion_matrix_table/_type"] == "table-file"
        assert row["val/confusion_matrix_table/nrows"] == module.num_classes**2
        assert row["val/samples/_type"] == "images/separated"
        assert row["val/samples/count"] == 2
        assert set(row["val/samples/all_masks"][0]) == {"prediction", "ground_truth"}
    # one validation's media and scalars at one step: Lightning charts the scalars at the
    # epoch's last training step (8 images / batch 4: steps 1 and 3), not trainer.global_step
    scalars = [r["trainer/global_step"] for r in run.history if "val/mIoU" in r]
    assert [r["trainer/global_step"] for r in rows] == scalars == [1, 3]
    chart = run.config["_wandb/visualize/val/confusion_matrix"]
    assert chart["panel_config"]["panelDefId"] == "wandb/confusion_matrix/v1"

    files = run_dir / "files"
    last = rows[-1]
    # The confusion-matrix table holds the module's accumulated matrix, cell by cell.
    table = json.loads((files / last["val/confusion_matrix_table/path"]).read_text())
    names = module.class_names
    counts = {(a, p): n for a, p, n in table["data"]}
    confmat = module.last_eval.confmat
    assert confmat.sum() > 0
    for i, a in enumerate(names):
        for j, p in enumerate(names):
            assert counts[(a, p)] == int(confmat[i, j])
    iou = json.loads((files / last["val/per_class_iou/path"]).read_text())
    assert iou["columns"] == ["class", "IoU"] and [r[0] for r in iou["data"]] == names

    # Images and masks are on disk; the ground truth keeps its void (255) border.
    for name in last["val/samples/filenames"]:
        assert Image.open(files / name).mode == "RGB"
    gt = np.array(Image.open(files / last["val/samples/all_masks"][0]["ground_truth"]["path"]))
    pred = np.array(Image.open(files / last["val/samples/all_masks"][0]["prediction"]["path"]))
    assert 255 in gt and set(np.unique(pred)) <= set(range(module.num_classes))
    assert gt.shape == pred.shape


def test_mask_class_labels_include_void():
    assert class_labels(["bg", "cat"]) == {0: "bg", 1: "cat", 255: "void"}


def test_samples_of_different_sizes_are_padded_with_void():
    samples = [
        {
            "image": np.full((3, 5, 3), 7, np.uint8),
            "pred": np.ones((3, 5), np.int64),
            "mask": np.zeros((3, 5), np.int64),
            "name": "a",
        },
        {
            "image": np.full((4, 2, 3), 9, np.uint8),
            "pred": np.ones((4, 2), np.int64),
            "mask": None,
            "name": "b",
        },
    ]
    a, b = pad_samples(samples)
    assert a["image"].shape == b["image"].shape == (4, 5, 3)
    assert a["pred"].shape == a["mask"].shape == b["pred"].shape == (4, 5)
    assert (a["image"][3] == 0).all() and (a["image"][:3] == 7).all()
    assert (a["mask"][3] == 255).all() and (a["mask"][:3] == 0).all()
    assert (b["pred"][:, 2:] == 255).all() and (b["pred"][:, :2] == 1).all() and b["mask"] is None


def test_confusion_chart_rejects_wrong_shape():
    with pytest.raises(ValueError, match="expected \\(3, 3\\)"):
        confusion_matrix_chart(np.zeros((2, 2)), ["a", "b", "c"], "t")


def test_media_failure_warns_once_and_training_goes_on(tmp_path, monkeypatch):
    data = SyntheticVOCDataModule(
        root=str(tmp_path / "data"), num_train=2, num_val=1, crop_size=32, batch_size=2
    )
    module = SegmentationModule(
        UNet(num_classes=data.num_classes, base_width=4, depth=2),
        num_classes=data.num_classes,
        class_names=data.class_names,
    )
    media = WandbMedia()
    monkeypatch.setattr(
        media, "build_payload", lambda *a: (_ for _ in ()).throw(OSError("disk full"))
    )
    trainer = L.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=WandbLogger(mode="offline", save_dir=str(tmp_path)),
        callbacks=[media],
        use_distributed_sampler=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )
    with pytest.warns(UserWarning, match="W&B media logging failed") as record:
        trainer.fit(module, datamodule=data)
    assert sum("W&B media logging failed" in str(w.message) for w in record) == 1
    assert trainer.current_epoch == 2 and module.last_eval.epoch == 1
    run = read_offline_run(find_offline_runs(tmp_path)[0], timeout_s=30)
    assert len(run.metric("val/mIoU")) == 2  # the metric curves are unaffected
