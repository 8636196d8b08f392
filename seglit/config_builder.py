"""The one place a config becomes objects: resolve, check, build cheaply, instantiate a key.

``seglit fit --config`` (:mod:`seglit.cli`), the recipe runner's planner
(:mod:`seglit.runner.run`) and a finished run's loader (:mod:`seglit.trained`) all read
configs through :class:`ConfigBuilder`, so a config means the same thing to each of them:

* :meth:`ConfigBuilder.resolve`: parse a config dict with the ``seglit`` command's own
  parser (the Lightning CLI's, with seglit's arguments and defaults), type-check it and fill
  in every default: the input of a run's fingerprint;
* :func:`check_config`: combinations the parser cannot reject by type;
* :meth:`ConfigBuilder.build`: instantiate what is cheap (the net on the ``meta`` device),
  so values that only fail at construction are named before training;
* :func:`instantiate`: one key (``data``, ``model.net``, ...) as an object.

Importing this module is light: torch and Lightning load when a parser is first needed.
"""

from __future__ import annotations

import difflib
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from seglit.validation import explain_union_error

if TYPE_CHECKING:
    from lightning.pytorch.cli import LightningArgumentParser


class ConfigError(ValueError):
    """A config that the seglit CLI rejects (unknown key, wrong type, bad combination)."""


_PER_RUN_KEYS = (
    "seed_everything",
    "trainer.logger",
    "trainer.default_root_dir",
    "checkpoint.dirpath",
    "run_summary.dirpath",
)
"""Keys that differ between the variants of a recipe but not in what :meth:`ConfigBuilder.build`
can find wrong: variants equal in everything else are built once."""


class ConfigBuilder:
    """Parses, type-checks and builds configs exactly as ``seglit fit --config`` would.

    The parser is built once and reused, so checking the many variants of a recipe costs
    little. Nothing here trains, reads data, or starts a logger.
    """

    def __init__(self) -> None:
        self._parser: LightningArgumentParser | None = None
        self._parsed: dict[str, Any] = {}
        self._built: dict[str, tuple[Any, str | None]] = {}

    @property
    def parser(self) -> LightningArgumentParser:
        """The ``seglit`` command's parser, subcommands included (built on first use)."""
        if self._parser is None:
            from seglit.cli import seglit_parser  # torch and Lightning load here

            self._parser = seglit_parser()
        return self._parser

    def parse(self, config: dict[str, Any], subcommand: str = "fit", source: str = "config"):
        """The config parsed for ``subcommand`` (a jsonargparse ``Namespace``), checked.

        A config parsed before is not parsed again (the runner resolves each variant, then
        builds it): the result is a copy of the first parse.

        Raises:
            ConfigError: naming ``source`` and the offending key.
        """
        key = json.dumps([subcommand, config], sort_keys=True, default=str)
        if key not in self._parsed:
            try:
                parsed = self.parser.parse_object({"subcommand": subcommand, subcommand: config})
                check_config(parsed[subcommand])
            except ConfigError as err:
                raise ConfigError(f"{source}: {err}") from None
            except Exception as err:  # jsonargparse's ArgumentError and friends
                message = describe_parse_error(self.parser, [subcommand], err)
                raise ConfigError(f"{source}: {message}") from None
            self._parsed[key] = parsed
        return self._parsed[key].clone()

    def resolve(
        self, config: dict[str, Any], subcommand: str = "fit", source: str = "config"
    ) -> dict[str, Any]:
        """The resolved config (every default filled in): the input of a fingerprint.

        Raises:
            ConfigError: naming ``source`` and the offending key.
        """
        return self.parse(config, subcommand, source)[subcommand].as_dict()

    def build(self, config: dict[str, Any], source: str = "config") -> Any:
        """Build what is cheap to build, so values that cannot work are named before training.

        The net is built on the ``meta`` device (shapes only), the datamodule and the
        callbacks with their settings, the optimizer on a dummy parameter and the LR
        scheduler on it, and the net takes one training crop (:func:`crop_problem`); no
        Trainer, no data read, no logger. Configs that differ only in :data:`_PER_RUN_KEYS`
        (a recipe's seeds, its output folders) are built once.

        Returns:
            The datamodule (for :meth:`~seglit.data.SegmentationDataModule.check_data`).

        Raises:
            ConfigError: naming ``source`` and what failed.
        """
        parsed = self.parse(config, "fit", source)
        key = _build_key(parsed.fit.as_dict())
        if key not in self._built:
            parsed.fit.trainer.logger = False  # no logger starts
            self._built[key] = _build(self.parser, parsed)
        datamodule, problem = self._built[key]
        if problem is not None:
            raise ConfigError(f"{source}: {problem}")
        return datamodule


def _build_key(resolved: dict[str, Any]) -> str:
    """``resolved`` without :data:`_PER_RUN_KEYS`, as text (a cache key)."""
    from seglit.recipe import get_dotted, set_dotted

    for dotted in _PER_RUN_KEYS:
        if get_dotted(resolved, dotted) is not None:
            set_dotted(resolved, dotted, None)
    return json.dumps(resolved, sort_keys=True, default=str)


def _build(parser: LightningArgumentParser, parsed: Any) -> tuple[Any, str | None]:
    """``(datamodule, None)``, or ``(None, what failed)``: see :meth:`ConfigBuilder.build`."""
    import torch

    try:
        with torch.device("meta"):
            built = parser.instantiate_classes(parsed).fit
        optimizer = built.model.optimizer_factory([torch.nn.Parameter(torch.zeros(1))])
    except Exception as err:
        return None, short_error(err)
    try:
        built.model.scheduler_factory(optimizer)
    except Exception as err:
        return None, f"model.lr_scheduler: {short_error(err)}"
    crop = getattr(built.data, "crop_size", None)
    return built.data, crop_problem(built.model.net, crop, parsed.fit) if crop else None


def crop_problem(net: Any, crop: tuple[int, int], config: Any) -> str | None:
    """Why ``net`` (built on the meta device) cannot take a training crop of ``crop``, if it
    cannot: a forward pass of shapes only, in eval mode (a batch of one must not trip
    BatchNorm's check for batches of one), that fails or gives empty logits (logits of
    another non-empty size are fine: the module resizes them). ``None`` when it can.

    Args:
        net: The net, on the meta device.
        crop: The datamodule's ``(height, width)`` crop.
        config: The parsed ``fit`` config (its stated ``crop_size``, for the message).
    """
    import torch

    height, width = crop
    try:
        with torch.no_grad():
            logits = net.eval()(torch.empty(1, 3, height, width, device="meta"))
        shape = tuple(logits.shape[-2:]) if isinstance(logits, torch.Tensor) else None
    except NotImplementedError:
        return None  # an operation without a meta kernel: nothing learned
    except Exception as err:
        reason = short_error(err)
    else:
        if shape is None or min(shape, default=1) > 0:
            return None
        reason = f"its logits are {'x'.join(map(str, shape))}"
    stated = config.get("data.init_args.crop_size")
    return (
        f"data.init_args.crop_size: {stated}; expected a crop {type(net).__name__} can take, "
        f"but a {height}x{width} input fails: {reason}"
    )


def instantiate(key: str, value: Any, base: type) -> Any:
    """``value`` (a ``class_path``/``init_args`` block, or a dataclass's fields) at config key
    ``key`` as an object of ``base``, parsed and type-checked as the Lightning CLI does.

    Raises:
        ConfigError: ``{key} cannot be built: <the reason, one line>``.
    """
    from jsonargparse import ArgumentParser

    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument(f"--{key}", type=base)
    try:
        parsed = parser.parse_object({key: value})
        return parser.instantiate_classes(parsed)[key]
    except Exception as err:  # jsonargparse's ArgumentError, or the class's own ValueError
        reason = describe_parse_error(parser, None, err)
        raise ConfigError(f"{key} cannot be built: {reason}") from None


_builder = ConfigBuilder()


def resolve_config(
    config: dict[str, Any], subcommand: str = "fit", source: str = "config"
) -> dict[str, Any]:
    """Parse and type-check a config exactly as ``seglit SUBCOMMAND --config`` would.

    Nothing is instantiated: no model is built and no data is read.

    Args:
        config: The config as a dict (``trainer``, ``model``, ``data``, ...).
        subcommand: The Lightning subcommand whose arguments apply.
        source: What to call the config in error messages.

    Returns:
        The resolved config (every default filled in), the input of a run's fingerprint.

    Raises:
        ConfigError: With a message naming the offending key.
    """
    return _builder.resolve(config, subcommand, source)


def validate_config(
    config: dict[str, Any], subcommand: str = "fit", source: str = "config"
) -> None:
    """Raise :class:`ConfigError` unless ``config`` parses (see :func:`resolve_config`)."""
    _builder.resolve(config, subcommand, source)


# ------------------------------------------------------------------------------ checks


def check_config(config: Any) -> None:
    """Reject settings that cannot work, before anything is built.

    Args:
        config: One subcommand's parsed config (a jsonargparse ``Namespace``).

    Raises:
        ConfigError: naming the key and the way out.
    """
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


def _gpu_requested(trainer: Any) -> bool:
    accelerator = str(trainer.get("accelerator", "auto"))
    if accelerator in ("gpu", "cuda"):
        return True
    if accelerator != "auto":
        return False
    # Lightning's own test, through NVML (lightning.fabric sets PYTORCH_NVML_BASED_CUDA_CHECK):
    # it does not initialise CUDA in this process, which may fork variants later
    from lightning.fabric.accelerators.cuda import is_cuda_available

    return is_cuda_available()


# ------------------------------------------------------------------------------ errors

_UNRECOGNIZED = re.compile(r"[Uu]nrecognized arguments: (.+)")
_NOT_ACCEPTED = re.compile(r"does not accept option '([^']+)'")
_PARSER_KEY = re.compile(r'Parser key "([^"]+)":')


def short_error(err: BaseException) -> str:
    """The first lines of an error, joined: the key, what was expected, what was given."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    if not lines:
        return type(err).__name__
    union = explain_union_error("config", str(err))
    if union is not None:
        return union.removeprefix("config: ")
    message = " ".join(lines[:3])
    # a long message is cut in the middle: its end says what to do
    return message if len(message) < 1200 else message[:400] + " ... " + message[-700:]


def _readable_types(text: str) -> str:
    text = re.sub(r"\bExpected an? ", "expected ", text)
    text = re.sub(r"<class '(?:[\w]+\.)*(\w+)'>", r"\1", text)
    return re.sub(r"typing\.Literal\[(.*?)\]", r"one of \1", text)


def describe_parse_error(parser: Any, args: list[str] | None, err: BaseException) -> str:
    """One line for a parser error: the full key, what was expected and what was given;
    an unknown key is named with the closest valid one.

    Args:
        parser: The parser that failed.
        args: The command line it parsed (its subcommand decides the suggested keys).
        err: The parser's error.
    """
    message = str(err)
    keys = _PARSER_KEY.findall(message)
    if keys:
        # nested classes (class_path / init_args): jsonargparse names each level's key
        path = ".init_args.".join(keys)
        union = explain_union_error(keys[0], message)
        if union is not None:
            return union
        reason = message.split(f'Parser key "{keys[-1]}":', 1)[1].strip().splitlines()
        reason = [line.strip() for line in reason[:2]] if reason else ["invalid"]
        text = reason[0] if not reason[0].endswith(":") else " ".join(reason)
        return f"{path}: {_readable_types(text)}"
    unknown = _NOT_ACCEPTED.findall(message)
    match = _UNRECOGNIZED.search(message)
    if match:
        unknown += [a.split("=", 1)[0].removeprefix("--") for a in match.group(1).split()]
    if not unknown:
        return _name_the_yaml_file(_readable_types(short_error(err)), args or [])
    known = _long_options(parser, args or [])
    hints = []
    for key in unknown:
        if not key or key.startswith("-"):
            continue
        close = difflib.get_close_matches(key, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        hints.append(f"key {key!r} is not accepted{hint}")
    return "; ".join(hints) or short_error(err)


def _name_the_yaml_file(text: str, args: list[str]) -> str:
    """A YAML error of a ``--config`` file names that file, not ``"<unicode string>"``."""
    if '"<unicode string>"' not in text:
        return text
    import yaml

    files = [b for a, b in zip(args, args[1:]) if a in ("--config", "-c")]
    files += [a.split("=", 1)[1] for a in args if a.startswith("--config=")]
    for name in files:
        try:
            yaml.safe_load(Path(name).read_text())
        except yaml.YAMLError:
            return text.replace('"<unicode string>"', repr(name))
        except OSError:
            continue
    return text


def _long_options(parser: Any, args: list[str]) -> list[str]:
    """The long option names of the subcommand named in ``args`` (for suggestions)."""
    subcommands = parser._subcommands_action.choices if parser._subcommands_action else {}
    sub = next((a for a in args if a in subcommands), None)
    target = subcommands.get(sub, parser)
    return [o.removeprefix("--") for o in target._option_string_actions if o.startswith("--")]
