"""Recipes: a LightningCLI config plus ``name``, ``ablation`` and ``smoke``.

A recipe is the ``fit`` config that ``seglit fit --config`` takes (``seed_everything``,
``trainer``, ``model``, ``data``, ...) plus three keys of its own::

    name: ablation_skip                 # W&B group and output folder
    ablation:
      model.net.init_args.fusion: [sum, concat]   # an axis: dotted key -> values
      model.net:                                  # an axis with labelled values
        unet: {class_path: seglit.models.UNet}
        fcn8s: {class_path: seglit.models.FCN8s}
      seeds: [0, 1, 2]                  # optional: each config runs once per seed
      mode: grid                        # grid (default) or zip
      baseline: unet-sum                # optional: defaults to the first config
      only: [unet-sum, unet-concat]     # optional: run just these (--variant reaches others)
    smoke:                              # merged into the recipe by --smoke
      data: {class_path: seglit.data.SyntheticVOCDataModule}
      trainer.max_epochs: 2
    smokes:                             # further smoke blocks: --smoke NAME
      tiny_unets:
        ablation:
          replace: [model.net]          # the smoke's own values of these axes
          model.net: {unet8: {class_path: seglit.models.UNet, init_args: {base_width: 8}}}
        trainer.max_epochs: 2

A named smoke (``--smoke NAME``) is applied to the recipe instead of ``smoke:`` (not on top of
it) and renames the recipe ``<name>-<NAME>``, so its outputs and W&B group
(``runs/smoke/ablation_skip-tiny_unets/``) never mix with the default smoke's.

An optional ``launcher:`` block gives the SLURM resources of ``--launcher slurm``
(:class:`seglit.runner.launcher_block.LauncherSettings`); it enters no config, except that under
``--launcher slurm`` its ``gpus_per_node`` and ``nodes`` set ``trainer.devices`` and
``trainer.num_nodes``.

A reproduction recipe also carries ``reference`` (the paper or config file it reproduces,
the reported number and the protocol) and ``deviations`` (a list of what differs and why);
neither changes the config (``tests/test_recipe_references.py`` checks them against it).

Axes combine as a grid (every combination) or zipped (``mode: zip``, equal lengths).
Each variant's name joins its axis labels (``unet-concat``) and, with seeds, the seed
(``unet-concat-s0``).
"""

from __future__ import annotations

import copy
import difflib
import itertools
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from seglit.config_files import (
    CONFIG_FILE_KEYS,
    is_config_file,
    read_config_file,
    read_config_files,
)

RECIPE_KEYS = ("name", "ablation", "smoke", "smokes", "reference", "deviations", "launcher")
CONFIG_KEYS = (
    "seed_everything",
    "trainer",
    "model",
    "data",
    "ckpt_path",
    "checkpoint",
    "run_summary",
)
ABLATION_OPTIONS = ("seeds", "mode", "baseline", "only")
MODES = ("grid", "zip")
SMOKE_ABLATION_OPTIONS = ("replace",)
"""Options of a smoke block's ``ablation`` only (see :func:`parse_recipe`)."""
_IDENTIFIER = re.compile(r"[A-Za-z0-9_.+-]+")
# Labels name folders and W&B run ids: no path separators, none of W&B's forbidden characters.
_LABEL_FORBIDDEN = re.compile(r"[/\\:;,#?'\"]")

SEED_MAX = 2**32 - 1
"""The largest seed (numpy's and Lightning's ``seed_everything``'s bound; the smallest is 0)."""


def is_seed(value: Any) -> bool:
    """Whether ``value`` is a seed numpy and Lightning accept: an int in ``0..SEED_MAX``."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= SEED_MAX


class RecipeError(ValueError):
    """A recipe that cannot be expanded: the message names the file and the key."""


@dataclass
class Variant:
    """One run of an ablation.

    Attributes:
        name: Unique readable name, e.g. ``unet-concat-s0``.
        group: The name without the seed (runs of one config over seeds share it).
        seed: The seed, or ``None`` when the recipe has no ``seeds``.
        labels: Axis key -> the label of this variant's value.
        overrides: Axis key -> the value this variant sets.
        config: The full LightningCLI ``fit`` config of this variant.
    """

    name: str
    group: str
    seed: int | None
    labels: dict[str, str] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)


@dataclass
class Recipe:
    """A parsed recipe: its name, base config, axes, seeds and baseline."""

    name: str
    path: Path
    config: dict[str, Any]
    axes: dict[str, dict[str, Any]]
    seeds: list[int] | None
    mode: str
    baseline: str | None
    only: list[str] | None = None
    reference: dict[str, Any] | None = None
    deviations: list[Any] = field(default_factory=list)
    launcher: dict[str, Any] | None = None
    """The ``launcher:`` block (SLURM resources; checked by :mod:`seglit.runner.launcher_block`)."""

    def variants(self, respect_only: bool = True) -> list[Variant]:
        """Expand the axes (grid or zip) and seeds into variants, in a stable order.

        Args:
            respect_only: Keep only the configs named by ``ablation.only`` (when set);
                ``False`` expands every config, for a run that names one outside ``only``.
        """
        keys = list(self.axes)
        choices = [list(self.axes[k].items()) for k in keys]
        if self.mode == "zip":
            lengths = {k: len(c) for k, c in zip(keys, choices)}
            if len(set(lengths.values())) > 1:
                raise RecipeError(
                    f"{self.path}: ablation.mode is zip but the axes have different "
                    f"lengths: {lengths}"
                )
            combos = list(zip(*choices)) if keys else [()]
        else:
            combos = list(itertools.product(*choices))
        variants = []
        groups = ["-".join(label for label, _ in combo) or "base" for combo in combos]
        if self.only is not None:
            unknown = [name for name in self.only if name not in groups]
            if unknown:
                raise RecipeError(
                    f"{self.path}: ablation.only names {unknown}, which are not configs of "
                    f"this recipe; expected names from {groups}"
                )
        for combo, group in zip(combos, groups):
            if respect_only and self.only is not None and group not in self.only:
                continue
            labels = {k: label for k, (label, _) in zip(keys, combo)}
            overrides = {k: value for k, (_, value) in zip(keys, combo)}
            for seed in self.seeds if self.seeds is not None else [None]:
                config = copy.deepcopy(self.config)
                for key, value in overrides.items():
                    set_dotted(config, key, copy.deepcopy(value))
                if seed is not None:
                    config["seed_everything"] = seed
                name = group if seed is None else f"{group}-s{seed}"
                variants.append(Variant(name, group, seed, labels, overrides, config))
        names = [v.name for v in variants]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise RecipeError(
                f"{self.path}: several variants are named {duplicates}; give the axis values "
                "distinct labels (use a mapping label -> value)"
            )
        return variants

    def baseline_group(self) -> str:
        """The config name (without seed) that the summary compares against."""
        groups = list(dict.fromkeys(v.group for v in self.variants()))
        if self.baseline is None:
            return groups[0]
        if self.baseline not in groups:
            raise RecipeError(
                f"{self.path}: ablation.baseline {self.baseline!r} is not a variant; "
                f"expected one of {groups}"
            )
        return self.baseline


def set_dotted(config: dict[str, Any], key: str, value: Any) -> None:
    """Set ``config["a"]["b"]["c"] = value`` for ``key = "a.b.c"``, creating dicts."""
    parts = key.split(".")
    node = config
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    node[parts[-1]] = value


def get_dotted(config: dict[str, Any], key: str, default: Any = None) -> Any:
    """Return ``config["a"]["b"]`` for ``key = "a.b"`` (``default`` when missing)."""
    node: Any = config
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def expand_dotted(mapping: dict[str, Any]) -> dict[str, Any]:
    """Turn top-level dotted keys (``trainer.max_epochs: 2``) into nested dicts."""
    out: dict[str, Any] = {}
    for key, value in mapping.items():
        if "." in key:
            nested: dict[str, Any] = {}
            set_dotted(nested, key, value)
            out = deep_merge(out, nested)
        else:
            out = deep_merge(out, {key: value})
    return out


def deep_merge(base: Any, override: Any) -> Any:
    """Merge ``override`` into ``base`` recursively (a new object; inputs untouched).

    Mappings merge key by key; anything else is replaced. A mapping whose ``class_path``
    differs from the base's replaces it entirely (its ``init_args`` belong to another class).
    """
    if not isinstance(base, dict) or not isinstance(override, dict):
        return copy.deepcopy(override)
    if (
        "class_path" in base
        and "class_path" in override
        and base["class_path"] != override["class_path"]
    ):
        return copy.deepcopy(override)
    merged = copy.deepcopy(base)
    for key, value in override.items():
        merged[key] = deep_merge(merged[key], value) if key in merged else copy.deepcopy(value)
    return merged


_LABEL_CHARS = re.compile(r"[^A-Za-z0-9_.+]+")


def value_label(axis: str, value: Any) -> str:
    """A short readable label for an axis value (used in variant names)."""
    leaf = axis.rsplit(".", 1)[-1]
    if isinstance(value, bool):
        return leaf if value else f"no_{leaf}"
    if value is None:
        return f"no_{leaf}"
    if isinstance(value, (list, tuple)):
        return "_".join(value_label(axis, v) for v in value) or "none"
    if isinstance(value, dict):
        raise RecipeError(
            f"ablation axis {axis!r} has a mapping value with no label; write the axis as a "
            "mapping label -> value, e.g. {unet: {class_path: ...}}"
        )
    return _LABEL_CHARS.sub("_", str(value)).strip("_") or "empty"


def _suggest(word: str, options: tuple[str, ...] | list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _parse_axes(path: Path, ablation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    axes: dict[str, dict[str, Any]] = {}
    for key, values in ablation.items():
        if key in ABLATION_OPTIONS:
            continue
        root = key.split(".", 1)[0]
        if root not in CONFIG_KEYS:
            raise RecipeError(
                f"{path}: ablation.{key} is neither an option {list(ABLATION_OPTIONS)} nor a "
                f"config key under {list(CONFIG_KEYS)}"
                + _suggest(key, list(ABLATION_OPTIONS) + list(CONFIG_KEYS))
            )
        if isinstance(values, dict):
            if not values:
                raise RecipeError(f"{path}: ablation axis {key!r} has no values")
            axes[key] = {str(label): value for label, value in values.items()}
        elif isinstance(values, list):
            if not values:
                raise RecipeError(f"{path}: ablation axis {key!r} has no values")
            axes[key] = {}
            for value in values:
                label = value_label(key, value)
                if label in axes[key]:
                    raise RecipeError(
                        f"{path}: ablation axis {key!r} has two values labelled {label!r}"
                    )
                axes[key][label] = value
        else:
            raise RecipeError(
                f"{path}: ablation axis {key!r} must be a list of values or a mapping "
                f"label -> value, got {type(values).__name__} {values!r}"
            )
        if key in CONFIG_FILE_KEYS:  # e.g. model.net: {unet: unet.yaml, fcn8s: fcn8s.yaml}
            for label, value in axes[key].items():
                if is_config_file(value):
                    axes[key][label] = read_config_file(value, f"{path}: ablation.{key}")
        for label in axes[key]:
            if label in (".", "..") or label != label.strip() or _LABEL_FORBIDDEN.search(label):
                raise RecipeError(
                    f"{path}: ablation axis {key!r} has the label {label!r}; labels name the "
                    "variants' folders and W&B runs: no /, \\, :, ;, comma, #, ?, quotes, "
                    "no space at either end, and not '.' or '..'"
                )
    return axes


def parse_recipe(
    raw: dict[str, Any], path: str | Path = "<recipe>", smoke: bool | str = False
) -> Recipe:
    """Validate a recipe mapping and return a :class:`Recipe`.

    Args:
        raw: The recipe as loaded from YAML.
        path: Where it came from (used in error messages).
        smoke: ``True`` merges the recipe's ``smoke`` block before expanding; a name merges
            ``smokes.<name>`` instead and renames the recipe ``<name>-<smoke name>`` (its
            own output folder and W&B group). In either block, ``ablation.replace: [AXIS,
            ...]`` makes the smoke's values of those axes replace the recipe's (and drops
            the recipe's ``baseline`` and ``only``, which name the recipe's labels) instead
            of merging into them per label.

    Raises:
        RecipeError: For unknown top-level or ``ablation`` keys, malformed axes and an
            unknown smoke name.
    """
    path = Path(path)
    if not isinstance(raw, dict):
        raise RecipeError(f"{path}: a recipe is a YAML mapping, got {type(raw).__name__}")
    for key in raw:
        if key not in RECIPE_KEYS + CONFIG_KEYS:
            raise RecipeError(
                f"{path}: unknown top-level key {key!r}; expected one of "
                f"{list(RECIPE_KEYS + CONFIG_KEYS)}" + _suggest(key, RECIPE_KEYS + CONFIG_KEYS)
            )
    name = raw.get("name")
    if not isinstance(name, str) or not _IDENTIFIER.fullmatch(name or ""):
        raise RecipeError(
            f"{path}: `name` must be a short identifier (letters, digits, _.+-), got {name!r}"
        )
    recipe = read_config_files(copy.deepcopy(raw), str(path))
    smoke_block = recipe.pop("smoke", None) or {}
    if not isinstance(smoke_block, dict):
        raise RecipeError(f"{path}: `smoke` must be a mapping of overrides")
    named_smokes = _named_smokes(path, recipe.pop("smokes", None))
    if smoke is True and "smoke" not in raw:
        raise RecipeError(
            f"{path}: --smoke: the recipe has no `smoke:` block (it would run the full "
            "configs)"
            + (f"; its named smokes: {list(named_smokes)} (--smoke NAME)" if named_smokes else "")
        )
    if smoke is True:
        recipe = _apply_smoke(path, recipe, smoke_block, "smoke")
    elif isinstance(smoke, str):
        recipe = _apply_smoke(
            path, recipe, _named_smoke(path, named_smokes, smoke), f"smokes.{smoke}"
        )
        name = f"{name}-{smoke}"
    ablation = recipe.pop("ablation", None) or {}
    recipe.pop("name")
    reference = recipe.pop("reference", None)
    deviations = recipe.pop("deviations", None) or []
    launcher = recipe.pop("launcher", None)
    if launcher is not None and not isinstance(launcher, dict):
        raise RecipeError(f"{path}: `launcher` must be a mapping, got {type(launcher).__name__}")
    if reference is not None and not isinstance(reference, dict):
        raise RecipeError(f"{path}: `reference` must be a mapping, got {type(reference).__name__}")
    if not isinstance(deviations, list):
        raise RecipeError(f"{path}: `deviations` must be a list, got {type(deviations).__name__}")
    if not isinstance(ablation, dict):
        raise RecipeError(f"{path}: `ablation` must be a mapping of axes and options")
    if "replace" in ablation:
        raise RecipeError(
            f"{path}: ablation.replace belongs in a smoke block (smoke.ablation.replace or "
            "smokes.NAME.ablation.replace): it names the axes whose values the smoke replaces"
        )
    axes = _parse_axes(path, ablation)
    mode = ablation.get("mode", "grid")
    if mode not in MODES:
        raise RecipeError(f"{path}: ablation.mode must be one of {list(MODES)}, got {mode!r}")
    seeds = ablation.get("seeds")
    if seeds is not None and (
        not isinstance(seeds, list) or not seeds or not all(is_seed(s) for s in seeds)
    ):
        raise RecipeError(
            f"{path}: ablation.seeds must be a non-empty list of ints in 0..{SEED_MAX}, "
            f"got {seeds!r}"
        )
    baseline = ablation.get("baseline")
    only = ablation.get("only")
    if only is not None and (
        not isinstance(only, list) or not only or not all(isinstance(n, str) for n in only)
    ):
        raise RecipeError(f"{path}: ablation.only must be a non-empty list of config names")
    result = Recipe(
        name, path, recipe, axes, seeds, mode, baseline, only, reference, deviations, launcher
    )
    result.baseline_group()  # validates the baseline name
    return result


def _named_smokes(path: Path, smokes: Any) -> dict[str, dict[str, Any]]:
    """Check the ``smokes:`` mapping (name -> smoke block); ``{}`` when absent."""
    if smokes is None:
        return {}
    if not isinstance(smokes, dict) or not smokes:
        raise RecipeError(
            f"{path}: `smokes` must be a non-empty mapping NAME -> smoke block, got {smokes!r}"
        )
    for smoke_name, block in smokes.items():
        if not isinstance(smoke_name, str) or not _IDENTIFIER.fullmatch(smoke_name):
            raise RecipeError(
                f"{path}: smokes.{smoke_name}: a smoke's name must be a short identifier "
                "(letters, digits, _.+-): it becomes part of the output folder's name"
            )
        if not isinstance(block, dict):
            raise RecipeError(f"{path}: smokes.{smoke_name} must be a mapping of overrides")
    return smokes


def _named_smoke(path: Path, smokes: dict[str, dict[str, Any]], smoke_name: str) -> dict[str, Any]:
    """The block of ``--smoke NAME``; an unknown name is a one-line error listing the names."""
    if smoke_name in smokes:
        return smokes[smoke_name]
    if not smokes:
        raise RecipeError(
            f"{path}: --smoke {smoke_name}: the recipe has no `smokes:` block, so no named "
            "smoke (--smoke alone applies its `smoke:` block)"
        )
    raise RecipeError(
        f"{path}: --smoke {smoke_name}: no smoke of that name; the recipe's named smokes are "
        f"{list(smokes)}" + _suggest(smoke_name, list(smokes))
    )


def _apply_smoke(
    path: Path, recipe: dict[str, Any], block: dict[str, Any], where: str
) -> dict[str, Any]:
    """Merge a smoke block (``where``: ``smoke`` or ``smokes.NAME``, for messages) into a recipe."""
    block = copy.deepcopy(block)
    smoke_ablation = block.pop("ablation", None)
    for key in expand_dotted(block):
        if key not in CONFIG_KEYS:
            raise RecipeError(
                f"{path}: {where}.{key} is not a config key; expected one of "
                f"{list(CONFIG_KEYS) + ['ablation']}" + _suggest(key, CONFIG_KEYS)
            )
    recipe = deep_merge(recipe, read_config_files(expand_dotted(block), f"{path}: {where}"))
    if smoke_ablation is not None:
        recipe["ablation"] = _merge_ablation(
            path, recipe.get("ablation") or {}, smoke_ablation, where
        )
    return recipe


def _replaced_axes(path: Path, smoke: dict[str, Any], where: str) -> list[str]:
    """The axes named by ``<where>.ablation.replace``, each one the smoke gives values for."""
    replace = smoke.get("replace", [])
    if not isinstance(replace, list) or not all(isinstance(axis, str) for axis in replace):
        raise RecipeError(
            f"{path}: {where}.ablation.replace must be a list of axis keys, got {replace!r}"
        )
    given = [key for key in smoke if key not in ABLATION_OPTIONS + SMOKE_ABLATION_OPTIONS]
    for axis in replace:
        if axis not in given:
            raise RecipeError(
                f"{path}: {where}.ablation.replace names {axis!r}, but {where}.ablation gives "
                f"no values for it; axes it gives: {given}" + _suggest(axis, given)
            )
    return replace


def _merge_ablation(
    path: Path, base: dict[str, Any], smoke: Any, where: str = "smoke"
) -> dict[str, Any]:
    """Merge a smoke's ``ablation`` into ``ablation``: options replace, axis mappings merge.

    An axis named in the smoke's ``replace`` takes the smoke's values as they are; the
    recipe's ``baseline`` and ``only`` are then dropped (they name the recipe's labels).
    """
    if not isinstance(smoke, dict):
        raise RecipeError(f"{path}: {where}.ablation must be a mapping")
    replace = _replaced_axes(path, smoke, where)
    merged = copy.deepcopy(base)
    if replace:
        merged.pop("baseline", None)
        merged.pop("only", None)
    for key, value in smoke.items():
        if key in SMOKE_ABLATION_OPTIONS:
            continue
        if key in replace:
            merged[key] = copy.deepcopy(value)
        elif isinstance(value, dict) and isinstance(merged.get(key), dict):
            unknown = [label for label in value if label not in merged[key]]
            if unknown:
                raise RecipeError(
                    f"{path}: {where}.ablation.{key} names values {unknown} that the axis does "
                    f"not have; expected labels from {list(merged[key])} (to give the smoke "
                    f"its own values, add {key!r} to {where}.ablation.replace)"
                )
            merged[key] = {
                label: deep_merge(v, value.get(label, {})) for label, v in merged[key].items()
            }
        else:
            merged[key] = copy.deepcopy(value)
    return merged


class UniqueKeyLoader(yaml.SafeLoader):
    """A YAML SafeLoader that refuses a mapping stating the same key twice.

    PyYAML keeps the last value silently (``max_epochs: 2`` then ``max_epochs: 5`` trains 5
    epochs). Merge keys (``<<: *anchor``) may still be overridden: that is their purpose.
    """

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:  # noqa: D102
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            try:
                first = seen.get(key)
                seen.setdefault(key, line)
            except TypeError:
                continue  # an unhashable key: the base loader says why
            if first is not None:  # on another line, or twice in one {...} on the same line
                where = f"lines {first} and {line}" if first != line else f"line {line} (twice)"
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f"duplicate key {key!r} on {where} (only one may stay)",
                    key_node.start_mark,
                )
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str, path: str | Path = "<yaml>") -> Any:
    """Parse YAML (safe), refusing duplicate keys.

    Raises:
        RecipeError: naming the file, the key and both line numbers (or the syntax error).
    """
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except yaml.constructor.ConstructorError as err:
        if err.problem and err.problem.startswith("duplicate key"):
            raise RecipeError(f"{path}: {err.problem}") from None
        raise RecipeError(f"{path}: not valid YAML: {err}") from None
    except yaml.YAMLError as err:
        raise RecipeError(f"{path}: not valid YAML: {err}") from None


def add_smoke_argument(parser: Any, help: str) -> None:
    """Add ``--smoke [NAME]`` to an argparse ``parser`` whose positional ``recipe`` is optional
    (``nargs="?"``); :func:`recipe_and_smoke` then reads both back.

    ``--smoke`` alone is ``True`` (the recipe's ``smoke:`` block); ``--smoke NAME`` is the
    name of a ``smokes:`` block.
    """
    parser.add_argument("--smoke", nargs="?", const=True, default=False, metavar="NAME", help=help)


def recipe_and_smoke(parser: Any, args: Any) -> None:
    """Fix ``args.recipe`` / ``args.smoke`` for ``--smoke RECIPE.yaml`` (argparse gives the
    recipe to ``--smoke`` as a smoke's name): the recipe, with the default smoke.

    Calls ``parser.error`` (exit 2) when no recipe was given.
    """
    if args.recipe is not None:
        return
    if not (isinstance(args.smoke, str) and args.smoke.endswith((".yaml", ".yml"))):
        parser.error("the following arguments are required: recipe")
    args.recipe, args.smoke = Path(args.smoke), True


def load_recipe(path: str | Path, smoke: bool | str = False) -> Recipe:
    """Read a recipe YAML file (see :func:`parse_recipe`); a key stated twice is an error."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"recipe file not found: {path}")
    raw = load_yaml(path.read_text(), path)
    return parse_recipe(raw, path, smoke=smoke)
