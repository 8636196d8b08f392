"""The ``seglit`` command: Lightning's CLI with seglit's model, data and defaults.

``seglit fit|validate|test|predict --config CONFIG.yaml`` (or ``python -m seglit ...``)
is a real :class:`~lightning.pytorch.cli.LightningCLI`. On top of Lightning it:

* uses :class:`~seglit.module.SegmentationModule` as the model and any
  :class:`~seglit.data.SegmentationDataModule` as ``data``;
* links ``data.num_classes`` and ``data.class_names`` into the model and the net, so a
  config never states the number of classes twice;
* always adds a ``checkpoint`` callback (best by ``val/mIoU``), an always-current
  ``last.ckpt``, atomic checkpoint writes, a ``run_summary`` callback (``metrics.json``),
  a ``predict_writer`` (colourised masks and overlays from ``seglit predict``),
  ``wandb_media`` (per-class IoU table, confusion matrix and sample masks when the logger
  is W&B), a throughput monitor and, with a logger, Lightning's ``LearningRateMonitor``;
* never overwrites a finished run: when ``run_summary.dirpath`` names a folder that holds a
  result, ``fit`` writes to ``<folder>/fit/version_<n>`` instead (unless it resumes that
  very run from one of its checkpoints), and ``validate`` / ``test`` / ``predict`` always
  write to ``<folder>/<subcommand>/version_<n>``; each job is its own W&B run
  (``job_type`` = the subcommand);
* records the run's fingerprint (:func:`seglit.fingerprint.fingerprint`) in
  ``fingerprint.json`` and ``metrics.json``.

An unknown key or a wrong type, in the config file or on the command line, exits with
status 2 and one line naming the key, before anything is instantiated.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from pathlib import Path
from typing import Any

from jsonargparse import Namespace
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback

from seglit.callbacks import (
    PredictionWriter,
    ProgressReporter,
    RunSummaryWriter,
    TrainSpeedMonitor,
)
from seglit.checkpoints import AtomicCheckpointIO, LastCheckpoint
from seglit.config_builder import ConfigError as ConfigError  # re-exported
from seglit.config_builder import check_config, describe_parse_error, instantiate
from seglit.config_builder import resolve_config as resolve_config  # re-exported
from seglit.config_builder import validate_config as validate_config  # re-exported
from seglit.data import SegmentationDataModule
from seglit.data.base import DataError
from seglit.fingerprint import Fingerprint
from seglit.module import NonFiniteLossError, SegmentationModule
from seglit.run_folder import (
    BEST_CHECKPOINT_FILENAME,
    CHECKPOINT_DIR,
    CHECKPOINT_GLOB,
    FAILED,
    RESOLVED_CONFIG_FILE,
    WANDB_LOGGER_CLASSES,
    new_run_id,
    next_version_dir,
    read_fingerprint,
    read_metrics,
    write_fingerprint,
)
from seglit.validation import (
    config_problems,
    import_class,
    max_steps_problems,
    seed_problems,
    uses_seglit_train_loader,
)
from seglit.wandb.media import WandbMedia

CHECKPOINT_DEFAULTS = {
    "checkpoint.monitor": "val/mIoU",
    "checkpoint.mode": "max",
    "checkpoint.filename": BEST_CHECKPOINT_FILENAME,
    "checkpoint.auto_insert_metric_name": False,
}


class LoggedSaveConfigCallback(SaveConfigCallback):
    """Saves ``resolved_config.yaml`` and logs the full resolved config to the logger."""

    def save_config(self, trainer: Any, pl_module: Any, stage: str) -> None:  # noqa: D102
        if trainer.logger is not None:
            config = self.config.as_dict()
            config.pop("config", None)
            trainer.logger.log_hyperparams(config)


class SeglitCLI(LightningCLI):
    """LightningCLI for seglit (see the module docstring for what it adds)."""

    def __init__(self, args: Any = None, run: bool = True, **kwargs: Any) -> None:
        kwargs.setdefault(
            "save_config_kwargs", {"config_filename": RESOLVED_CONFIG_FILE, "overwrite": True}
        )
        kwargs.setdefault("save_config_callback", LoggedSaveConfigCallback)
        # No prefix matching: `--trainer.max_epoch` is a typo, not `--trainer.max_epochs`.
        kwargs["parser_kwargs"] = {"allow_abbrev": False, **kwargs.get("parser_kwargs", {})}
        self.fingerprint: Fingerprint | None = None
        super().__init__(
            SegmentationModule,
            SegmentationDataModule,
            subclass_mode_data=True,
            auto_configure_optimizers=False,
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
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults(CHECKPOINT_DEFAULTS)
        parser.add_lightning_class_args(RunSummaryWriter, "run_summary")
        parser.add_lightning_class_args(PredictionWriter, "predict_writer")
        parser.add_lightning_class_args(WandbMedia, "wandb_media")

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Parse; a bad key or value becomes a :class:`ConfigError` of one line."""
        self._args = args  # read again by _parse_ckpt_path
        try:
            super().parse_arguments(parser, args)
        except Exception as err:
            if type(err).__name__ != "ArgumentError":  # jsonargparse's (and argparse's)
                raise
            argv = list(args) if isinstance(args, (list, tuple)) else sys.argv[1:]
            raise ConfigError(describe_parse_error(parser, argv, err)) from None
        _, config = self._subcommand_config()
        # LightningCLI seeds right after parsing, before before_instantiate_classes' checks
        problems = seed_problems({"seed_everything": config.get("seed_everything")})
        if problems:
            raise ConfigError(problems[0])

    def _parse_ckpt_path(self) -> None:
        """Restore the checkpoint's hyperparameters, then re-apply what the user stated.

        Lightning replaces the config's ``model.*`` values by the ones saved in the
        ``--ckpt_path`` checkpoint, so ``--model.inference.crf=false`` would silently lose to
        the checkpoint's ``crf: true``. Here every ``model.*`` value that the config files or
        the command line state wins; the checkpoint fills in what they leave unstated.
        (Checkpoints of older seglit versions that pickled an ``InferenceConfig`` load with
        ``weights_only=True``: :mod:`seglit.inference` allows that class.)
        """
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if not ckpt_path or not Path(ckpt_path).is_file():
            return
        args = self._args
        if isinstance(args, (dict, Namespace)):
            stated = self.parser.parse_object(args, defaults=False)
        else:
            stated = self.parser.parse_args(args, defaults=False)
        super()._parse_ckpt_path()
        model = stated[subcommand].get("model")
        restated = {
            key: value
            for key, value in (model.as_dict() if model is not None else {}).items()
            if key not in ("net", "optimizer", "lr_scheduler")  # never in the hyperparameters
        }
        if restated:
            self.config = self.parser.parse_object({subcommand: {"model": restated}}, self.config)

    def _subcommand_config(self) -> tuple[str | None, Any]:
        subcommand = self.config.get("subcommand")
        return subcommand, self.config.get(subcommand) if subcommand else self.config

    def before_instantiate_classes(self) -> None:
        """Reject impossible settings, then place the job's outputs (never over a result)."""
        subcommand, config = self._subcommand_config()
        if config is None:
            return
        check_config(config)
        if subcommand == "fit":
            problems = config_problems(config.as_dict()) or max_steps_problem(config)
            if problems:
                raise ConfigError("; ".join(problems))
        if subcommand == "predict":
            check_predict_input(config)
        if subcommand is not None:
            self.fingerprint = Fingerprint.of(config.as_dict())
            place_outputs(subcommand, config, self.fingerprint)

    def instantiate_trainer(self, **kwargs: Any):  # noqa: D102
        trainer = super().instantiate_trainer(**kwargs)
        trainer.callbacks.insert(0, TrainSpeedMonitor())
        best = trainer.checkpoint_callback
        trainer.callbacks.append(LastCheckpoint(best.dirpath if best else None))
        trainer.callbacks.append(ProgressReporter())
        if trainer.loggers:
            trainer.callbacks.append(LearningRateMonitor(logging_interval="step"))
        trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        for callback in trainer.callbacks:
            if isinstance(callback, RunSummaryWriter) and self.fingerprint is not None:
                callback.fingerprint = self.fingerprint.digest
        return trainer


def max_steps_problem(config: Any) -> list[str]:
    """A ``trainer.max_steps`` that ends before the first validation (a fit without a
    result), counted from the train split as the recipe runner counts it; named before the
    run's folder is written. Empty when ``max_steps`` is unset or the count is uncertain.

    Args:
        config: The ``fit`` subcommand's parsed config.
    """
    resolved = config.as_dict()
    if (resolved.get("trainer") or {}).get("max_steps") in (None, -1) or not resolved.get("data"):
        return []
    data_class = import_class(str(resolved["data"].get("class_path", "")))
    if data_class is None:
        return []  # instantiation names it
    if not uses_seglit_train_loader(data_class):
        return []  # a user's class, which may load its own way: not built twice
    datamodule = instantiate("data", resolved["data"], SegmentationDataModule)
    try:
        size = datamodule.check_data()
    except DataError:
        return []  # the datamodule's setup names it
    return [] if size is None else max_steps_problems(resolved, size, datamodule.batch_size)


def check_predict_input(config: Any) -> None:
    """``seglit predict`` needs a folder of images: named before anything starts.

    Raises:
        ConfigError: ``data.init_args.predict_dir`` is unset, missing or holds no image.
    """
    from seglit.data.folder import ImageFolderDataset

    folder = config.get("data.init_args.predict_dir")
    if not folder:
        raise ConfigError(
            "seglit predict needs data.init_args.predict_dir: a folder of images to segment "
            "(e.g. --data.init_args.predict_dir=path/to/images; or use python -m "
            "seglit.predict RUN_DIR IMAGES)"
        )
    try:
        ImageFolderDataset(folder)
    except (FileNotFoundError, ValueError) as err:
        raise ConfigError(f"data.init_args.predict_dir: {err}") from None


# ----------------------------------------------------------------------------- job outputs


def _holds_a_run(folder: Path, fingerprint: Fingerprint) -> bool:
    """Whether ``folder`` holds a run to protect: a finished result, checkpoints, or outputs
    of another config (a failed attempt of this very config may be retried in place)."""
    recorded = read_fingerprint(folder)
    if recorded is not None and recorded.digest != fingerprint.digest:
        return True
    if any((folder / CHECKPOINT_DIR).glob(CHECKPOINT_GLOB)):
        return True
    try:
        metrics = read_metrics(folder)
    except ValueError:
        return True  # unreadable: not ours to overwrite
    return metrics is not None and metrics.status != FAILED


def _resumes_in_place(config: Any, folder: Path, fingerprint: Fingerprint) -> bool:
    """A ``fit`` resuming this folder's own run from one of its checkpoints."""
    ckpt = config.get("ckpt_path")
    if not ckpt or not Path(ckpt).is_file():
        return False
    inside = Path(ckpt).resolve().is_relative_to(folder.resolve())
    recorded = read_fingerprint(folder)
    return inside and (recorded is None or recorded.digest == fingerprint.digest)


def place_outputs(subcommand: str, config: Any, fingerprint: Fingerprint) -> None:
    """Point a job's outputs at a folder where they overwrite nothing (module docstring).

    Acts only when ``run_summary.dirpath`` names the run folder (the recipe runner's
    variants, and any config that states it); otherwise Lightning's own versioned layout
    applies. ``fit`` writes ``fingerprint.json`` into the folder it uses.
    """
    if not config.get("run_summary.dirpath"):
        return
    folder = Path(config["run_summary.dirpath"])
    job_dir = folder
    if subcommand != "fit":
        job_dir = next_version_dir(folder, subcommand)
    elif _holds_a_run(folder, fingerprint) and not _resumes_in_place(config, folder, fingerprint):
        job_dir = next_version_dir(folder, "fit")
        print(
            f"seglit: {folder} already holds a run; this fit writes to {job_dir} "
            "(the existing results are left untouched)",
            file=sys.stderr,
        )
    if job_dir != folder:
        config["run_summary.dirpath"] = str(job_dir)
        config["trainer.default_root_dir"] = str(job_dir)
        checkpoints = config.get("checkpoint.dirpath")
        if checkpoints is None or Path(checkpoints) == folder / CHECKPOINT_DIR:
            config["checkpoint.dirpath"] = str(job_dir / CHECKPOINT_DIR)
    _set_wandb_identity(subcommand, config, job_dir, new_run=job_dir != folder)
    if subcommand == "fit":
        job_dir.mkdir(parents=True, exist_ok=True)
        if read_fingerprint(job_dir) != fingerprint:
            write_fingerprint(job_dir, fingerprint)


def _set_wandb_identity(subcommand: str, config: Any, job_dir: Path, new_run: bool) -> None:
    """One W&B run per (run folder, job): its own job type, and a new id for a new job."""
    logger = config.get("trainer.logger")
    if getattr(logger, "class_path", None) not in WANDB_LOGGER_CLASSES:
        return
    init = logger.init_args
    init.job_type = subcommand
    init.save_dir = str(job_dir)
    if new_run or not init.get("id"):
        base = init.get("name") or job_dir.parent.name
        init.name = base if subcommand == "fit" else f"{base}-{subcommand}"
        init.id = new_run_id(init.name)


# ------------------------------------------------------------------------- the parser alone


class _ParserOnlyCLI(SeglitCLI):
    """The seglit CLI set up up to its parser, and no further.

    ``LightningCLI.__init__`` builds the parser, then parses, seeds, instantiates and runs;
    each of those steps is a no-op here (the test pinning Lightning's private methods checks
    that these are still the steps ``__init__`` takes after building the parser).
    """

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:  # noqa: D102
        self.config = Namespace(subcommand=None)

    def _parse_ckpt_path(self) -> None:
        pass

    def _set_seed(self) -> None:
        pass

    def before_instantiate_classes(self) -> None:  # noqa: D102
        pass

    def instantiate_classes(self) -> None:  # noqa: D102
        pass


def seglit_parser() -> LightningArgumentParser:
    """The ``seglit`` command's parser (subcommands included), with nothing parsed.

    It raises jsonargparse's errors instead of exiting (``exit_on_error=False``), accepts no
    abbreviated keys, and has no checkpoint-hyperparameter instantiators (it builds configs,
    never loads checkpoints).
    """
    cli = _ParserOnlyCLI(
        args=[], parser_kwargs={"exit_on_error": False}, load_from_checkpoint_support=False
    )
    return cli.parser


# ----------------------------------------------------------------------------- entry point


class _DropTips(logging.Filter):
    """Drops Lightning's advertising tips (``💡 Tip: ... try installing ...``) from the log."""

    def filter(self, record: logging.LogRecord) -> bool:  # noqa: D102
        return not str(record.getMessage()).startswith("💡")


def quiet_third_party_noise() -> None:
    """Keep what matters in a run's log: drop Lightning's tips and a torch-internal
    deprecation notice Lightning triggers; every warning that can change a result stays."""
    logging.getLogger("lightning.pytorch.utilities.rank_zero").addFilter(_DropTips())
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
    # Lightning's advice to use `srun` whenever the command exists (seglit launches SLURM
    # jobs itself), and its notice that a resumed ModelCheckpoint writes to another folder
    # (seglit places every job's outputs on purpose and says where).
    warnings.filterwarnings("ignore", message=r".*The `srun` command is available.*")
    warnings.filterwarnings("ignore", message=r".*dirpath has changed from.*")
    # W&B's own banner, history sparklines and sync hint: seglit prints the sync command
    # itself, once. WANDB_SILENT=false brings them back.
    os.environ.setdefault("WANDB_SILENT", "true")


def main(args: list[str] | None = None) -> None:
    """Entry point of the ``seglit`` console script and ``python -m seglit``.

    Configuration errors print one line naming the key and exit with status 2; a training
    loss that turns NaN exits with status 1.
    """
    quiet_third_party_noise()
    try:
        cli = SeglitCLI(args=args, parser_kwargs={"exit_on_error": False})
    except ConfigError as err:
        print(f"seglit: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    except NonFiniteLossError as err:
        print(f"seglit: error: {err}", file=sys.stderr)
        raise SystemExit(1) from None
    for callback in getattr(getattr(cli, "trainer", None), "callbacks", []):
        if isinstance(callback, RunSummaryWriter) and callback.problem:
            print(f"seglit: error: {callback.problem}", file=sys.stderr)  # no result: failed
            raise SystemExit(1)


if __name__ == "__main__":
    main()
