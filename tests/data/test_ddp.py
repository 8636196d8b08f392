"""Under a real (gloo, 2-process) process group the datamodule shards data itself."""

from __future__ import annotations

import json

import lightning as L
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from seglit.data import SyntheticVOCDataModule


def _worker(rank: int, world_size: int, init_file: str, root: str, out_dir: str) -> None:
    dist.init_process_group(
        "gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size
    )
    try:
        dm = SyntheticVOCDataModule(root=root, num_train=6, num_val=5, seed=1, batch_size=1)
        dm.setup("fit")
        train_loader = dm.train_dataloader()
        train_loader.sampler.set_epoch(0)
        result = {
            "val": [n for b in dm.val_dataloader() for n in b["name"]],
            "train": [n for b in train_loader for n in b["name"]],
        }
        with open(f"{out_dir}/{rank}.json", "w") as f:
            json.dump(result, f)
    finally:
        dist.destroy_process_group()


def test_two_processes_see_every_val_image_exactly_once(synthetic_voc_root, tmp_path):
    mp.start_processes(
        _worker,
        args=(2, str(tmp_path / "init"), str(synthetic_voc_root), str(tmp_path)),
        nprocs=2,
        start_method="fork",
    )
    results = [json.loads((tmp_path / f"{r}.json").read_text()) for r in range(2)]
    val = results[0]["val"] + results[1]["val"]
    assert len(results[0]["val"]) == 3 and len(results[1]["val"]) == 2, "no padding"
    assert sorted(val) == [f"synth_{i:06d}" for i in range(6, 11)]
    train = results[0]["train"] + results[1]["train"]
    assert sorted(train) == [f"synth_{i:06d}" for i in range(6)], "train shards are disjoint"


class _TinyModule(L.LightningModule):
    def __init__(self, num_classes: int):
        super().__init__()
        self.net = torch.nn.Conv2d(3, num_classes, 1)
        self.seen_val: list[str] = []

    def training_step(self, batch, batch_idx):
        assert batch["mask"].dtype == torch.int64
        return torch.nn.functional.cross_entropy(
            self.net(batch["image"]), batch["mask"], ignore_index=255
        )

    def validation_step(self, batch, batch_idx):
        assert batch["image"].shape[-2:] == batch["mask"].shape[-2:]
        self.seen_val += batch["name"]

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_trainer_runs_on_the_datamodule(synthetic_voc_root):
    dm = SyntheticVOCDataModule(
        root=str(synthetic_voc_root), num_train=6, num_val=5, seed=1, batch_size=2, crop_size=32
    )
    model = _TinyModule(dm.num_classes)
    trainer = L.Trainer(
        max_epochs=1,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
        num_sanity_val_steps=0,
    )
    trainer.fit(model, datamodule=dm)
    assert sorted(model.seen_val) == [f"synth_{i:06d}" for i in range(6, 11)]
    assert trainer.global_step == 3
