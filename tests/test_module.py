"""SegmentationModule: loss, parameter groups, non-finite loss handling."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn

from seglit.data import SyntheticVOCDataModule
from seglit.models import UNet
from seglit.module import NonFiniteLossError, SegmentationModule
from seglit.optim import PolyLR


class WithBackbone(nn.Module):
    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        self.backbone = nn.Conv2d(3, 8, 3, padding=1)
        self.classifier = nn.Conv2d(8, num_classes, 1)

    def forward(self, x):
        return self.classifier(torch.relu(self.backbone(x)))


class WithAux(WithBackbone):
    def forward(self, x):
        out = super().forward(x)
        return {"out": out, "aux": out * 0.5} if self.training else out


class WithScaleOutputs(WithBackbone):
    """Returns per-scale logits as a list of aux outputs (DeepLab v2 MSC style)."""

    def forward(self, x):
        out = super().forward(x)
        return {"out": out, "aux": [out * 0.5, out * 2.0]} if self.training else out


class TurnsNaN(WithBackbone):
    """Produces NaN logits from its 4th training forward on."""

    calls = 0

    def forward(self, x):
        out = super().forward(x)
        if self.training:
            TurnsNaN.calls += 1
            if TurnsNaN.calls >= 4:
                out = out * float("nan")
        return out


def _datamodule(root) -> SyntheticVOCDataModule:
    return SyntheticVOCDataModule(
        root=str(root), num_train=16, num_val=5, batch_size=4, crop_size=32, num_workers=0
    )


def test_head_lr_multiplier_builds_two_parameter_groups():
    module = SegmentationModule(WithBackbone(), num_classes=5, head_lr_mult=10.0)
    module.trainer = L.Trainer(max_steps=100, logger=False)  # for estimated_stepping_batches
    config = module.configure_optimizers()
    opt, sched = config["optimizer"], config["lr_scheduler"]["scheduler"]
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.01, 0.1])
    assert {id(p) for p in opt.param_groups[0]["params"]} == {
        id(p) for p in module.net.backbone.parameters()
    }
    assert opt.defaults["weight_decay"] == 1e-4 and opt.defaults["momentum"] == 0.9
    assert opt.defaults["fused"] is True  # seglit's default step is fused on the CPU / CUDA
    assert isinstance(sched, PolyLR) and sched.total_iters == 100
    assert config["lr_scheduler"]["interval"] == "step"


def test_caffe_bias_groups_double_the_lr_and_drop_the_decay():
    module = SegmentationModule(
        WithBackbone(), num_classes=5, head_lr_mult=10.0, bias_lr_mult=2.0, bias_weight_decay=False
    )
    opt = module.build_optimizer()
    backbone = {id(p) for p in module.net.backbone.parameters()}
    seen = set()
    for group in opt.param_groups:
        for p in group["params"]:
            name = next(n for n, q in module.net.named_parameters() if q is p)
            lr = (
                0.01
                * (1.0 if id(p) in backbone else 10.0)
                * (2.0 if name.endswith("bias") else 1.0)
            )
            assert group["lr"] == pytest.approx(lr), name
            assert group["weight_decay"] == (0.0 if name.endswith("bias") else 1e-4), name
            seen.add(id(p))
    assert seen == {id(p) for p in module.net.parameters()}
    assert len(opt.param_groups) == 4


def test_aux_loss_is_added_with_its_weight():
    torch.manual_seed(0)
    batch = {"image": torch.randn(2, 3, 16, 16), "mask": torch.randint(0, 5, (2, 16, 16))}
    batch["mask"][:, :4] = 255
    plain = SegmentationModule(WithBackbone(), num_classes=5)
    aux = SegmentationModule(WithAux(), num_classes=5, aux_weight=0.4)
    aux.net.load_state_dict(plain.net.state_dict())
    logits = plain.net(batch["image"])
    main = plain.loss(logits, batch["mask"])
    expected = main + 0.4 * plain.loss(logits * 0.5, batch["mask"])
    aux.log = plain.log = lambda *a, **k: None  # no trainer attached
    aux.optimizers = lambda: torch.optim.SGD(aux.parameters(), lr=0.1)
    aux.trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    assert aux.training_step(batch, 0).item() == pytest.approx(expected.item())

    scales = SegmentationModule(WithScaleOutputs(), num_classes=5, aux_weight=1.0)
    scales.net.load_state_dict(plain.net.state_dict())
    scales.log, scales.trainer = aux.log, aux.trainer
    scales.optimizers = lambda: torch.optim.SGD(scales.parameters(), lr=0.1)
    each = [plain.loss(logits * f, batch["mask"]) for f in (1.0, 0.5, 2.0)]
    assert scales.training_step(batch, 0).item() == pytest.approx(sum(each).item(), rel=1e-6)


def test_loss_ignores_void_and_upsamples_logits():
    module = SegmentationModule(WithBackbone(), num_classes=5)
    logits = torch.randn(1, 5, 8, 8)
    mask = torch.full((1, 16, 16), 255, dtype=torch.long)
    mask[0, :8] = 1
    up = torch.nn.functional.interpolate(
        logits, size=(16, 16), mode="bilinear", align_corners=False
    )
    expected = torch.nn.functional.cross_entropy(up[..., :8, :], mask[:, :8])
    assert module.loss(logits, mask) == pytest.approx(expected.item(), rel=1e-5)


def test_nan_loss_stops_with_step_and_batch_and_keeps_last_good_checkpoint(
    tmp_path, synthetic_root
):
    TurnsNaN.calls = 0
    module = SegmentationModule(TurnsNaN(), num_classes=5)
    ckpt = ModelCheckpoint(dirpath=tmp_path, save_last=True, every_n_train_steps=1, save_top_k=0)
    trainer = L.Trainer(
        max_epochs=5,
        accelerator="cpu",
        logger=False,
        callbacks=[ckpt],
        enable_progress_bar=False,
        num_sanity_val_steps=0,
        use_distributed_sampler=False,
        enable_model_summary=False,
    )
    with pytest.raises(NonFiniteLossError, match=r"global step 3 \(epoch 0, batch 3, images \["):
        trainer.fit(module, datamodule=_datamodule(synthetic_root))
    saved = torch.load(tmp_path / "last.ckpt", weights_only=False)
    assert saved["global_step"] == 3
    assert all(
        torch.isfinite(t).all() for t in saved["state_dict"].values() if t.is_floating_point()
    )


def test_class_name_and_weight_lengths_are_checked():
    with pytest.raises(ValueError, match="class_names has 2 names but num_classes is 5"):
        SegmentationModule(WithBackbone(), num_classes=5, class_names=["a", "b"])
    with pytest.raises(ValueError, match="class_weights has 1 values"):
        SegmentationModule(WithBackbone(), num_classes=5, class_weights=[1.0])


def test_channels_last_and_forward_shape():
    module = SegmentationModule(UNet(5, base_width=4, depth=2), num_classes=5, channels_last=True)
    out = module(torch.randn(1, 3, 33, 35))
    assert out.shape == (1, 5, 33, 35)
    conv_weights = [p for p in module.net.parameters() if p.dim() == 4 and p.shape[-1] > 1]
    assert conv_weights and all(
        p.is_contiguous(memory_format=torch.channels_last) for p in conv_weights
    )


@pytest.mark.parametrize(
    ("module_kwargs", "trainer_kwargs"),
    [
        ({"channels_last": True}, {"precision": "bf16-mixed"}),
        ({}, {"accumulate_grad_batches": 2, "gradient_clip_val": 1.0}),
    ],
    ids=["bf16-channels_last", "accumulate-clip"],
)
def test_training_options_run(tmp_path, synthetic_root, module_kwargs, trainer_kwargs):
    module = SegmentationModule(UNet(5, base_width=4, depth=2), num_classes=5, **module_kwargs)
    trainer = L.Trainer(
        max_epochs=1,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_checkpointing=False,
        use_distributed_sampler=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
        **trainer_kwargs,
    )
    trainer.fit(module, datamodule=_datamodule(synthetic_root))
    assert trainer.global_step > 0
    assert all(torch.isfinite(p).all() for p in module.parameters())
    assert 0.0 <= float(trainer.callback_metrics["val/mIoU"]) <= 1.0


def test_sync_batchnorm_conversion_covers_every_batchnorm():
    from lightning.pytorch.plugins.layer_sync import TorchSyncBatchNorm

    from seglit.models import build_model

    for name, kwargs in [
        ("unet", {"base_width": 4, "depth": 2}),
        ("deeplabv3plus", {"backbone": "resnet18", "backbone_width": 8}),
    ]:
        net = TorchSyncBatchNorm().apply(build_model(name, 5, **kwargs))
        norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        assert norms and all(isinstance(m, nn.SyncBatchNorm) for m in norms)


def test_compile_wraps_forward_and_keeps_state_dict_keys(monkeypatch):
    calls = []
    real_compile = torch.compile

    def eager_compile(model, **kwargs):  # inductor takes minutes on a small CPU; dynamo is real
        calls.append(model)
        return real_compile(model, backend="eager", **kwargs)

    monkeypatch.setattr(torch, "compile", eager_compile)
    net = UNet(5, base_width=4, depth=2)
    plain = SegmentationModule(net, num_classes=5)
    compiled = SegmentationModule(net, num_classes=5, compile=True)
    assert calls == [net]
    assert compiled.state_dict().keys() == plain.state_dict().keys()
    assert not any(key.startswith("_forward_fn") for key in plain.state_dict())
    x = torch.randn(1, 3, 33, 35)
    assert torch.allclose(compiled(x), plain(x), atol=1e-6)


def test_val_loss_is_the_dataset_level_mean_over_labelled_pixels(synthetic_root):
    torch.manual_seed(0)
    module = SegmentationModule(UNet(5, base_width=4, depth=2), num_classes=5)
    dm = _datamodule(synthetic_root)
    trainer = L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        use_distributed_sampler=False,
        enable_model_summary=False,
    )
    (result,) = trainer.validate(module, datamodule=dm)
    total, count = 0.0, 0
    module.eval()
    with torch.no_grad():
        for batch in dm.val_dataloader():
            logits = module(batch["image"])
            total += torch.nn.functional.cross_entropy(
                logits, batch["mask"], ignore_index=255, reduction="sum"
            ).item()
            count += int((batch["mask"] != 255).sum())
    assert result["val/loss"] == pytest.approx(total / count, rel=1e-5)


def _csv_trainer(tmp_path) -> L.Trainer:
    """Two epochs logging every 2 steps to a CSV file (read back with :func:`_csv_rows`)."""
    from lightning.pytorch.loggers import CSVLogger

    return L.Trainer(
        max_epochs=2,
        accelerator="cpu",
        logger=CSVLogger(tmp_path, name="csv", version=0),
        log_every_n_steps=2,
        enable_progress_bar=False,
        enable_checkpointing=False,
        use_distributed_sampler=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )


def _csv_rows(tmp_path) -> list[dict[str, str]]:
    import csv

    with open(tmp_path / "csv" / "version_0" / "metrics.csv") as f:
        return list(csv.DictReader(f))


class RecordLosses(L.Callback):
    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.losses.append(float(outputs["loss"]))


def test_loss_and_learning_rate_curves_reach_the_logger(tmp_path, synthetic_root):
    from lightning.pytorch.callbacks import LearningRateMonitor

    module = SegmentationModule(UNet(5, base_width=4, depth=2), num_classes=5)
    trainer = _csv_trainer(tmp_path)
    recorder = RecordLosses()
    # the seglit CLI adds Lightning's LearningRateMonitor whenever a run has a logger
    trainer.callbacks += [recorder, LearningRateMonitor(logging_interval="step")]
    trainer.fit(module, datamodule=_datamodule(synthetic_root))  # 4 steps per epoch
    rows = _csv_rows(tmp_path)
    losses = recorder.losses
    assert len(losses) == 8
    # the step loss on Lightning's logging steps (every 2nd), with that step's value
    step_losses = {
        int(r["step"]): float(r["train/loss_step"]) for r in rows if r.get("train/loss_step")
    }
    assert sorted(step_losses) == [1, 3, 5, 7]
    for step, value in step_losses.items():
        assert value == pytest.approx(losses[step], rel=1e-6)
    # the epoch mean over every step of the epoch (equal batches of 4)
    epoch_losses = [float(r["train/loss_epoch"]) for r in rows if r.get("train/loss_epoch")]
    assert epoch_losses == pytest.approx([sum(losses[:4]) / 4, sum(losses[4:]) / 4], rel=1e-6)
    assert trainer.callback_metrics["train/loss_epoch"] == pytest.approx(epoch_losses[-1])
    lrs = {int(r["step"]): float(r["lr-SGD"]) for r in rows if r.get("lr-SGD")}
    # on the steps the logger receives, with the rate that step used: PolyLR(power 0.9)
    # over 8 steps from the default 0.01
    assert sorted(lrs) == [1, 3, 5, 7]
    for step, lr in lrs.items():
        assert lr == pytest.approx(0.01 * (1 - step / 8) ** 0.9)


def test_per_class_iou_reaches_the_logger_with_the_validation_step(tmp_path, synthetic_root):
    module = SegmentationModule(UNet(5, base_width=4, depth=2), num_classes=5)
    trainer = _csv_trainer(tmp_path)
    datamodule = _datamodule(synthetic_root)
    trainer.fit(module, datamodule=datamodule)  # 4 steps per epoch
    rows = _csv_rows(tmp_path)
    miou_steps = [int(r["step"]) for r in rows if r.get("val/mIoU")]
    assert miou_steps == [3, 7]
    per_class = [r for r in rows if any(k.startswith("val/IoU/") and r[k] for k in r)]
    # one row per validation, at its step and epoch, with the epoch's per-class IoU
    assert [(int(r["step"]), int(r["epoch"])) for r in per_class] == [(3, 0), (7, 1)]
    last = {
        k.removeprefix("val/IoU/"): float(v) for k, v in per_class[-1].items() if v and "IoU/" in k
    }
    expected = {k: v for k, v in module.last_eval.iou.items() if v == v}  # drop NaN
    assert last.keys() == expected.keys() and last
    for name, iou in expected.items():
        assert last[name] == pytest.approx(iou, abs=1e-6)
    # logged through self.log: also in the results validate returns
    (results,) = trainer.validate(module, datamodule=datamodule, verbose=False)
    assert {f"val/IoU/{k}" for k in expected} <= results.keys()
    assert {"val/mIoU", "val/loss", "val/acc", "val/mAcc", "val/fwIoU"} <= results.keys()


def test_evaluation_without_image_names_is_refused_across_processes():
    from types import SimpleNamespace

    module = SegmentationModule(UNet(5, base_width=4, depth=2), num_classes=5)
    batch = {"image": torch.randn(2, 3, 32, 32), "mask": torch.zeros(2, 32, 32, dtype=torch.long)}
    module.trainer = SimpleNamespace(world_size=2)  # what a 2-process DDP run reports
    with pytest.raises(ValueError, match="carry no 'name'.*scored twice"):
        module.validation_step(batch, 0)


def test_loss_average_all_divides_by_every_pixel_as_mmseg():
    """``loss_average="all"``: mmseg's CrossEntropyLoss (avg_non_ignore=False) sums over the
    labelled pixels and divides by all of them, void included; the default divides by the
    labelled ones."""
    logits = torch.randn(2, 5, 4, 4)
    masks = torch.randint(0, 5, (2, 4, 4))
    masks[0, :2] = 255  # 8 of 32 pixels void
    per_pixel = nn.functional.cross_entropy(logits, masks, ignore_index=255, reduction="none")
    labelled = SegmentationModule(WithBackbone(), 5)
    everything = SegmentationModule(WithBackbone(), 5, loss_average="all")
    assert labelled.loss(logits, masks) == pytest.approx(float(per_pixel.sum() / 24))
    assert everything.loss(logits, masks) == pytest.approx(float(per_pixel.sum() / 32))
    weights = [1.0, 2.0, 0.5, 1.0, 3.0]
    weighted = SegmentationModule(WithBackbone(), 5, class_weights=weights, loss_average="all")
    w = torch.tensor(weights)
    by_hand = nn.functional.cross_entropy(
        logits, masks, weight=w, ignore_index=255, reduction="none"
    ).mean()
    assert weighted.loss(logits, masks) == pytest.approx(float(by_hand))
    with pytest.raises(ValueError, match="loss_average"):
        SegmentationModule(WithBackbone(), 5, loss_average="sum")


def test_head_lr_scope_classifier_multiplies_only_the_classifier():
    """DeepLab v1/v2 as caffe trains them: lr x10 on fc8 only (``head_lr_scope``), fc6/fc7
    at the base rate; ``head`` (default) multiplies every layer outside the backbone."""
    from seglit.models import DeepLabV1, DeepLabV2

    for net in (
        DeepLabV1(5, backbone_width=4, fc_channels=8),
        DeepLabV2(5, backbone="vgg16", backbone_width=4),
        DeepLabV2(5, backbone_width=4, backbone="resnet18"),
    ):
        fc8 = {id(p) for m in net.classifier_modules() for p in m.parameters()}
        for scope in ("classifier", "head"):
            module = SegmentationModule(net, 5, head_lr_mult=10.0, head_lr_scope=scope)
            optimizer = module.build_optimizer()
            backbone = {id(p) for p in net.backbone.parameters()}
            for group in optimizer.param_groups:
                for p in group["params"]:
                    if scope == "classifier":
                        fast = id(p) in fc8
                    else:
                        fast = id(p) not in backbone
                    assert group["lr"] == pytest.approx(0.1 if fast else 0.01)
    with pytest.raises(ValueError, match="classifier_modules"):
        SegmentationModule(WithBackbone(), 5, head_lr_scope="classifier")


def test_inference_hyperparameters_are_plain_values(tmp_path):
    """A module given an ``InferenceConfig`` keeps it, and saves its fields as a dict:
    Lightning's ``--ckpt_path`` reads the hyperparameters with ``weights_only=True``."""
    from seglit.inference import InferenceConfig

    config = InferenceConfig(crf=True, scales=[0.5, 1.0], flip=True)
    module = SegmentationModule(WithBackbone(), 5, inference=config)
    assert module.inference is config
    path = tmp_path / "hparams.pt"
    torch.save(dict(module.hparams), path)
    saved = torch.load(path, weights_only=True)["inference"]
    assert saved["crf"] and saved["scales"] == [0.5, 1.0] and saved["flip"]
    assert SegmentationModule(WithBackbone(), 5, inference=saved).inference == config


class _IdsAndByteMasks(torch.utils.data.Dataset):
    """A user's dataset: integer image ids, uint8 masks (as read from a PNG), 255 = void."""

    def __init__(self, void: bool = False) -> None:
        generator = torch.Generator().manual_seed(0)
        self.masks = torch.randint(0, 5, (5, 16, 16), generator=generator, dtype=torch.uint8)
        if void:
            self.masks[:] = 255
        self.images = torch.randn(5, 3, 16, 16, generator=generator)

    def __len__(self) -> int:
        return len(self.masks)

    def __getitem__(self, index: int) -> dict:
        return {"image": self.images[index], "mask": self.masks[index], "name": index}


def _quiet_trainer(**kwargs) -> L.Trainer:
    return L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        **kwargs,
    )


def _validate(dataset: torch.utils.data.Dataset, batch_size: int) -> SegmentationModule:
    torch.manual_seed(0)
    module = SegmentationModule(WithBackbone(), num_classes=5)
    trainer = _quiet_trainer()
    trainer.validate(module, torch.utils.data.DataLoader(dataset, batch_size=batch_size))
    return module


@pytest.mark.parametrize("batch_size", [1, 2])
def test_integer_image_ids_and_byte_masks_of_a_user_dataset(batch_size):
    """Collated integer ids are a tensor (id 0 alone is falsy; several are ambiguous): each
    image keeps its own id as its name, the one a distributed sampler's repeat is told by."""
    module = _validate(_IdsAndByteMasks(), batch_size)
    assert module.last_eval.image_names == ["0", "1", "2", "3", "4"]
    by_batch_of_one = _validate(_IdsAndByteMasks(), 1).last_eval
    assert (module.last_eval.confmat == by_batch_of_one.confmat).all()


def test_a_split_with_every_pixel_void_scores_nan(tmp_path, capsys):
    import json
    import math

    from seglit.callbacks import RunSummaryWriter

    result = _validate(_IdsAndByteMasks(void=True), 2).last_eval
    assert math.isnan(result.metrics["mIoU"])
    # a fit on it finishes, its mIoU recorded as undefined (null), not a crash at the end
    loader = torch.utils.data.DataLoader(_IdsAndByteMasks(void=True), batch_size=2)
    trainer = _quiet_trainer(
        max_epochs=1,
        enable_checkpointing=False,
        callbacks=[RunSummaryWriter(dirpath=str(tmp_path))],
    )
    train = torch.utils.data.DataLoader(_IdsAndByteMasks(), batch_size=2)
    trainer.fit(SegmentationModule(WithBackbone(), num_classes=5), train, loader)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    assert metrics["status"] == "finished" and metrics["best"]["mIoU"] is None
    assert "best val mIoU undefined at epoch 0" in capsys.readouterr().out


def test_float_masks_are_refused_by_name():
    module = SegmentationModule(WithBackbone(), num_classes=5)
    batch = {"image": torch.randn(1, 3, 8, 8), "mask": torch.zeros(1, 8, 8)}
    with pytest.raises(ValueError, match=r"batch\['mask'\] has dtype torch.float32; expected"):
        module.training_step(batch, 0)
