"""The ``seglit`` command: Lightning's CLI with seglit's model, data and defaults.

``seglit fit|validate|test|predict --config CONFIG.yaml`` (or ``python -m seglit ...``)
is a real :class:`~lightning.pytorch.cli.LightningCLI`. On top of Lightning it:

* uses :class:`~seglit.module.SegmentationModule` as the model and any
  :class:`~seglit.data.SegmentationDataModule` as ``data``;
* links ``data.num_classes`` and ``data.class_names`` into the model and the net, so a
  config never states the number of classes twice;
* always adds a ``checkpoint`` callback (best by ``val/mIoU`` plus ``last.ckpt``), a
  ``run_summary`` callback (``metrics.json``), a ``predict_writer`` (colourised masks and
  overlays from ``seglit predict``), ``wandb_media`` (per-class IoU table, confusion
  matrix and sample masks when the logger is W&B) and a throughput monitor;
* turns off Lightning's distributed sampler: seglit's datamodules shard data themselves
  so that validation scores every image exactly once under DDP.

An unknown key or a wrong type, in the config file or on the command line, exits with a
non-zero status and a message naming the key, before anything is instantiated.
"""

from __future__ import annotations

import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import torch
import yaml
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback

from seglit.callbacks import Checkpoint, RunSummaryWriter, TrainSpeedMonitor
from seglit.data import SegmentationDataModule
from seglit.module import NonFiniteLossError, SegmentationModule
from seglit.predict import PredictionWriter
from seglit.wandb_media import WandbMedia

CHECKPOINT_DEFAULTS = {
    "checkpoint.monitor": "val/mIoU",
    "checkpoint.mode": "max",
    "checkpoint.save_last": True,
    "checkpoint.filename": "best-epoch{epoch:03d}-step{step:06d}",
    "checkpoint.auto_insert_metric_name": False,
}


class LoggedSaveConfigCallback(SaveConfigCallback):
    """Saves ``resolved_config.yaml`` and logs the full resolved config to the logger."""

    def save_config(self, trainer: Any, pl_module: Any, stage: str) -> None:  # noqa: D102
        if trainer.logger is not None:
            config = self.config.as_dict()
            config.pop("config", None)
            trainer.logger.log_hyperparams(config)


class ConfigError(ValueError):
    """A config that the seglit CLI rejects (unknown key, wrong type, bad combination)."""


class SeglitCLI(LightningCLI):
    """LightningCLI for seglit (see the module docstring for what it adds)."""

    def __init__(self, args: Any = None, run: bool = True, **kwargs: Any) -> None:
        kwargs.setdefault(
            "save_config_kwargs", {"config_filename": "resolved_config.yaml", "overwrite": True}
        )
        kwargs.setdefault("save_config_callback", LoggedSaveConfigCallback)
        trainer_defaults = {"use_distributed_sampler": False, **kwargs.pop("trainer_defaults", {})}
        # No prefix matching: `--trainer.max_epoch` is a typo, not `--trainer.max_epochs`.
        kwargs["parser_kwargs"] = {"allow_abbrev": False, **kwargs.get("parser_kwargs", {})}
        super().__init__(
            SegmentationModule,
            SegmentationDataModule,
            subclass_mode_data=True,
            auto_configure_optimizers=False,
            trainer_defaults=trainer_defaults,
            args=args,
            run=run,
            **kwargs,
        )

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Link data properties into the model and add seglit's forced callbacks."""
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.link_arguments(
            "data.num_classes", "model.net.init_args.num_classes", apply_on="instantiate"
        )
        parser.link_arguments("data.class_names", "model.class_names", apply_on="instantiate")
        parser.add_lightning_class_args(Checkpoint, "checkpoint")
        parser.set_defaults(CHECKPOINT_DEFAULTS)
        parser.add_lightning_class_args(RunSummaryWriter, "run_summary")
        parser.add_lightning_class_args(PredictionWriter, "predict_writer")
        parser.add_lightning_class_args(WandbMedia, "wandb_media")

    def before_instantiate_classes(self) -> None:
        """Reject settings that cannot work on this machine before building anything."""
        config = (
            self.config.get(self.config.get("subcommand"))
            if "subcommand" in self.config
            else self.config
        )
        if config is None:
            return
        net_args = config.get("model.net.init_args") if config.get("model.net") else None
        if net_args is not None and net_args.get("num_classes") is not None:
            raise ConfigError(
                "model.net.init_args.num_classes is set from data.num_classes; remove it "
                "from the config (the dataset decides the number of classes)"
            )
        trainer = config.get("trainer", {})
        if trainer.get("sync_batchnorm") and not _gpu_requested(trainer):
            raise ConfigError(
                "trainer.sync_batchnorm=true needs GPUs (SyncBatchNorm runs over NCCL); "
                "this run is on the CPU: set trainer.sync_batchnorm=false or use "
                "trainer.accelerator=gpu"
            )

    def instantiate_trainer(self, **kwargs: Any):  # noqa: D102
        trainer = super().instantiate_trainer(**kwargs)
        trainer.callbacks.insert(0, TrainSpeedMonitor())
        return trainer


def _gpu_requested(trainer: Any) -> bool:
    accelerator = str(trainer.get("accelerator", "auto"))
    if accelerator in ("gpu", "cuda"):
        return True
    return accelerator == "auto" and torch.cuda.is_available()


class _ParsedOnly(Exception):
    """Raised to stop the CLI right after parsing (used by :func:`validate_config`)."""

    def __init__(self, config: Any) -> None:
        super().__init__("parsed")
        self.config = config


class _ParseOnlyCLI(SeglitCLI):
    def _set_seed(self) -> None:
        pass

    def before_instantiate_classes(self) -> None:
        super().before_instantiate_classes()
        raise _ParsedOnly(self.config)


def validate_config(
    config: dict[str, Any], subcommand: str = "fit", source: str = "config"
) -> None:
    """Parse and type-check a config exactly as ``seglit SUBCOMMAND --config`` would.

    Nothing is instantiated: no model is built and no data is read.

    Args:
        config: The config as a dict (``trainer``, ``model``, ``data``, ...).
        subcommand: The Lightning subcommand whose arguments apply.
        source: What to call the config in error messages.

    Raises:
        ConfigError: With jsonargparse's message naming the offending key.
    """
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "config.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*args parameter is intended.*")
                _ParseOnlyCLI(
                    args=[subcommand, "--config", str(path)], parser_kwargs={"exit_on_error": False}
                )
        except _ParsedOnly:
            return
        except ConfigError as err:
            raise ConfigError(f"{source}: {err}") from None
        except Exception as err:  # jsonargparse's ArgumentError and friends
            raise ConfigError(f"{source}: {err}") from None
    raise ConfigError(f"{source}: the config was not parsed")  # pragma: no cover


def main(args: list[str] | None = None) -> None:
    """Entry point of the ``seglit`` console script and ``python -m seglit``."""
    try:
        SeglitCLI(args=args)
    except (ConfigError, NonFiniteLossError) as err:
        print(f"seglit: error: {err}", file=sys.stderr)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
