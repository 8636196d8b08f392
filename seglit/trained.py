"""Loading a finished variant: its net with the trained weights, and what it needs at inference.

A run folder (see :mod:`seglit.run_folder`) holds the ``config.yaml`` it was trained with and
its checkpoints. :func:`load_trained` rebuilds the net exactly as that config describes it
(the data class gives the number of classes, their names and colours and the
normalisation), loads the checkpoint's ``net.*`` weights strictly and returns them with the
variant's own inference settings (``model.inference``), for ``python -m seglit.predict`` and
``python -m seglit.export``.

:func:`check_trained` does every check that needs no model: the run finished, its config
names a net and a data class, the checkpoint asked for exists. It imports neither torch nor
Lightning, so a command can refuse a wrong run folder in a fraction of a second, before
anything is built.
"""

from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from seglit.run_folder import (
    BEST,
    CONFIG_FILE,
    FINISHED,
    METRICS_FILE,
    RESUME,
    CheckpointNotFound,
    choose_checkpoint,
    read_metrics,
)

if TYPE_CHECKING:
    from torch import nn

    from seglit.inference import InferenceConfig

NO_DOWNLOAD = {"pretrained": False, "encoder_weights": None}
"""Net arguments that would fetch pretrained weights, and the value that does not. Every
weight comes from the checkpoint (loaded strictly), so a download would be overwritten."""


class TrainedRunError(ValueError):
    """A run folder or checkpoint that cannot be loaded; the message names the file and why."""


@dataclass
class TrainedRun:
    """What :func:`check_trained` found: the run folder, its config and the checkpoint."""

    run_dir: Path
    config: dict[str, Any]
    checkpoint: Path


@dataclass
class TrainedNet:
    """A finished variant's net, ready for inference.

    Attributes:
        net: The net in eval mode on the CPU, with the checkpoint's weights.
        class_names: Name of each class index.
        palette: ``(r, g, b)`` colour of each class index.
        mean: Normalisation mean (0..1 scale) the net was trained with.
        std: Normalisation std (0..1 scale).
        inference: The variant's ``model.inference`` settings (defaults when unset).
        checkpoint: The checkpoint the weights came from.
        run_dir: The run folder.
    """

    net: nn.Module
    class_names: list[str]
    palette: list[tuple[int, int, int]]
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    inference: InferenceConfig
    checkpoint: Path
    run_dir: Path

    @property
    def num_classes(self) -> int:
        """Number of classes (the net's output channels)."""
        return len(self.class_names)


# ----------------------------------------------------------------------- checks (no torch)


def resolve_checkpoint(run_dir: str | os.PathLike, checkpoint: str = BEST) -> Path:
    """The checkpoint file meant by ``checkpoint``.

    Args:
        run_dir: The run folder.
        checkpoint: ``"best"`` (the ``best-*.ckpt`` of ``checkpoints/``; when there are
            several, the one of the best epoch recorded in ``metrics.json``), ``"last"``
            (``checkpoints/last.ckpt``) or the path of a checkpoint file.

    Raises:
        TrainedRunError: The checkpoint does not exist, or "best" is ambiguous.
    """
    if checkpoint == RESUME:  # not a choice here: a file of that name, as any other path
        checkpoint = os.path.join(os.curdir, checkpoint)
    try:
        path, _ = choose_checkpoint(run_dir, checkpoint)
    except CheckpointNotFound as err:
        raise TrainedRunError(str(err)) from None
    return path


def check_trained(run_dir: str | os.PathLike, checkpoint: str = BEST) -> TrainedRun:
    """Check that ``run_dir`` holds a finished run that can be loaded; build nothing.

    Args:
        run_dir: A run folder (``runs/<recipe>/<variant>`` or any ``seglit fit`` folder
            with a ``config.yaml``).
        checkpoint: See :func:`resolve_checkpoint`.

    Raises:
        TrainedRunError: Naming the missing or unfinished piece.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise TrainedRunError(f"run folder {run_dir} does not exist")
    try:
        metrics = read_metrics(run_dir)
    except ValueError as err:
        raise TrainedRunError(str(err)) from None
    if metrics is None:
        raise TrainedRunError(
            f"{run_dir} holds no finished run (no {METRICS_FILE}); train it first"
        )
    if metrics.status != FINISHED:
        raise TrainedRunError(
            f"{run_dir} holds no finished run ({METRICS_FILE} status: {metrics.status})"
        )
    config_path = run_dir / CONFIG_FILE
    if not config_path.is_file():
        raise TrainedRunError(f"{config_path} does not exist: the net cannot be rebuilt")
    try:
        config = yaml.safe_load(config_path.read_text())
    except yaml.YAMLError as err:
        raise TrainedRunError(f"{config_path} is not valid YAML ({err})") from None
    for key in ("model.net", "data"):
        if not _class_config(config, key):
            raise TrainedRunError(f"{config_path} has no {key}.class_path")
    return TrainedRun(run_dir, config, resolve_checkpoint(run_dir, checkpoint))


def _class_config(config: Any, dotted: str) -> dict[str, Any] | None:
    """The ``{class_path, init_args}`` block at ``dotted`` in ``config``, if there is one."""
    node = config
    for part in dotted.split("."):
        node = node.get(part) if isinstance(node, dict) else None
    return node if isinstance(node, dict) and node.get("class_path") else None


# --------------------------------------------------------------------------------- loading


def load_trained(
    run_dir: str | os.PathLike,
    checkpoint: str = BEST,
    inference: dict[str, Any] | None = None,
) -> TrainedNet:
    """Rebuild a finished variant's net from its ``config.yaml`` and load its weights.

    The data class and the net are instantiated from the config by jsonargparse, as the
    Lightning CLI did when the run trained (the datamodule only declares its classes and
    normalisation: no data is read). The net gets ``num_classes`` from the datamodule and
    no pretrained weights (:data:`NO_DOWNLOAD`), then the checkpoint's ``net.*`` weights,
    strictly: a missing or unexpected weight is an error.

    Args:
        run_dir: The run folder.
        checkpoint: ``"best"``, ``"last"`` or a checkpoint path (see
            :func:`resolve_checkpoint`).
        inference: ``model.inference`` fields that replace the variant's, e.g.
            ``{"crf": False}`` for DeepLab's number before the CRF (the fields not given
            keep the variant's values), as ``--model.inference.*`` does on the command line.

    Returns:
        The net in eval mode on the CPU and what inference needs.

    Raises:
        TrainedRunError: The run is not finished, a file is missing, the config cannot be
            instantiated, or the checkpoint does not fit the net.
    """
    found = check_trained(run_dir, checkpoint)
    # Imported here, not at the top: check_trained() stays free of torch and Lightning.
    from seglit.data import SegmentationDataModule
    from seglit.inference import InferenceConfig

    data = _instantiate(SegmentationDataModule, _class_config(found.config, "data"), "data")
    net_config = _class_config(found.config, "model.net")
    net_config = {**net_config, "init_args": dict(net_config.get("init_args") or {})}
    net_config["init_args"]["num_classes"] = data.num_classes
    net_config["init_args"].update(_no_download_args(net_config["class_path"]))
    from torch import nn

    net = _instantiate(nn.Module, net_config, "model.net")
    stated = (found.config.get("model") or {}).get("inference") or {}
    settings = _instantiate(InferenceConfig, {**stated, **(inference or {})}, "model.inference")
    try:
        net.load_state_dict(_net_weights(found.checkpoint), strict=True)
    except RuntimeError as err:  # missing / unexpected keys, or shapes that differ
        raise TrainedRunError(
            f"{found.checkpoint} does not fit the net of {found.run_dir / CONFIG_FILE}: "
            + " ".join(str(err).split())[:400]
        ) from None
    net.eval()
    return TrainedNet(
        net=net,
        class_names=list(data.class_names),
        palette=[tuple(int(v) for v in colour) for colour in data.palette],
        mean=tuple(float(v) for v in data.mean),
        std=tuple(float(v) for v in data.std),
        inference=settings,
        checkpoint=found.checkpoint,
        run_dir=found.run_dir,
    )


def _instantiate(base: type, value: Any, key: str) -> Any:
    """``value`` at config key ``key`` as an object of ``base``
    (:func:`seglit.config_builder.instantiate`); an error names the run's config file."""
    from seglit.config_builder import ConfigError, instantiate

    try:
        return instantiate(key, value, base)
    except ConfigError as err:
        raise TrainedRunError(f"{CONFIG_FILE}: {err}") from None


def _no_download_args(class_path: str) -> dict[str, Any]:
    """The :data:`NO_DOWNLOAD` arguments that the net class at ``class_path`` accepts."""
    from seglit.validation import import_class

    cls = import_class(class_path)
    if cls is None:
        return {}  # jsonargparse names the problem when it instantiates the class
    params = inspect.signature(cls).parameters
    return {k: v for k, v in NO_DOWNLOAD.items() if k in params}


def _net_weights(path: Path) -> dict[str, Any]:
    """The ``net.*`` entries of a Lightning checkpoint's ``state_dict``, prefix removed.

    Loaded with ``weights_only=True``: the checkpoint holds tensors and plain values, or, from
    older versions, the pickled :class:`~seglit.inference.InferenceConfig` of a run that set
    ``model.inference``, which :mod:`seglit.inference` adds to torch's safe globals (for good:
    a ``safe_globals`` context here would remove it again on exit).
    """
    import pickle

    import torch

    import seglit.inference  # noqa: F401  (allows InferenceConfig in weights_only loads)

    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, pickle.UnpicklingError, EOFError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise TrainedRunError(f"cannot read checkpoint {path}: {first}") from None
    state = checkpoint.get("state_dict") if isinstance(checkpoint, dict) else None
    weights = {k[4:]: v for k, v in (state or {}).items() if k.startswith("net.")}
    if not weights:
        raise TrainedRunError(f"{path} holds no net.* weights (not a seglit checkpoint?)")
    return weights
