"""Resuming from last.ckpt ends exactly where an uninterrupted run ends."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from lightning.pytorch.callbacks import Callback

from seglit.cli import SeglitCLI


def _fit(config: dict, path, *extra: str) -> None:
    path.write_text(yaml.safe_dump(config))
    SeglitCLI(args=["fit", "--config", str(path), *extra])


class Crash(Callback):
    """Kills training at the start of the second epoch (after epoch 0 was checkpointed)."""

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == 1:
            raise RuntimeError("simulated crash")


def test_resume_matches_an_uninterrupted_run(tmp_path, make_fit_config):
    straight = make_fit_config(tmp_path / "straight", max_epochs=2)
    _fit(straight, tmp_path / "straight.yaml")

    # The same config, interrupted after 4 steps (one epoch) ...
    config = make_fit_config(tmp_path / "resumed", max_epochs=2)
    path = tmp_path / "resumed.yaml"
    path.write_text(yaml.safe_dump(config))
    cli = SeglitCLI(args=["--config", str(path)], run=False)
    cli.trainer.callbacks.append(Crash())
    with pytest.raises(RuntimeError, match="simulated crash"):
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    last = tmp_path / "resumed" / "checkpoints" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 4
    assert not (tmp_path / "resumed" / "metrics.json").exists()
    # ... and resumed from its last checkpoint.
    _fit(config, path, "--ckpt_path", str(last))

    a = torch.load(tmp_path / "straight" / "checkpoints" / "last.ckpt", weights_only=True)
    b = torch.load(last, weights_only=True)
    assert a["global_step"] == b["global_step"] > 0
    assert a["state_dict"].keys() == b["state_dict"].keys()
    for key, value in a["state_dict"].items():
        assert torch.equal(value, b["state_dict"][key]), key
    # Optimizer state and LR schedule continued, not restarted.
    assert a["lr_schedulers"][0]["last_epoch"] == b["lr_schedulers"][0]["last_epoch"]
    momentum_a = a["optimizer_states"][0]["state"]
    momentum_b = b["optimizer_states"][0]["state"]
    assert all(
        torch.equal(momentum_a[k]["momentum_buffer"], momentum_b[k]["momentum_buffer"])
        for k in momentum_a
    )
    # The metric history survives the interruption.
    ma = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    mb = json.loads((tmp_path / "resumed" / "metrics.json").read_text())
    assert [h["epoch"] for h in mb["history"]] == [0, 1]
    assert [h["mIoU"] for h in ma["history"]] == [h["mIoU"] for h in mb["history"]]
    assert ma["best"]["confmat"] == mb["best"]["confmat"]
