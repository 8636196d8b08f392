"""Values that parse but cannot work, named before anything trains.

The seglit CLI's parser checks types; this module checks what a type cannot say: a learning
rate of 0, a run that never validates (so it has no best epoch), a batch of 0 images. Each
check returns a list of problem strings, one line each, that names the key, the value and
what is expected. The recipe runner collects the problems of every variant (and of its own
flags) in one list, so ``--dry-run`` reports them all at once; other checks (e.g. missing
weights found by a fetch step) append their own lines to the same list.

Nothing here imports torch or Lightning: the checks read the resolved config as a dict.
"""

from __future__ import annotations

import ast
import difflib
import functools
import importlib
import importlib.util
import inspect
import re
from pathlib import Path
from typing import Any

from seglit.recipe import SEED_MAX, get_dotted, is_seed
from seglit.text import plural


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def optimizer_problems(config: dict[str, Any]) -> list[str]:
    """``model.optimizer``: lr > 0, weight_decay >= 0, momentum in [0, 1)."""
    init = get_dotted(config, "model.optimizer.init_args")
    if not isinstance(init, dict):
        return []  # the default optimizer (SGD lr 0.01, momentum 0.9, wd 1e-4)
    key = "model.optimizer.init_args"
    problems = []
    lr = init.get("lr")
    if _number(lr) and lr <= 0:  # (a NaN is left to fail as a NaN loss, named then)
        problems.append(f"{key}.lr: {lr}; expected a learning rate > 0 (nothing would learn)")
    decay = init.get("weight_decay")
    if _number(decay) and decay < 0:
        problems.append(f"{key}.weight_decay: {decay}; expected >= 0")
    momentum = init.get("momentum")
    if _number(momentum) and not 0 <= momentum < 1:
        problems.append(f"{key}.momentum: {momentum}; expected a value in [0, 1)")
    return problems


def module_problems(config: dict[str, Any]) -> list[str]:
    """``model``: the loss and learning-rate multipliers are not negative."""
    model = get_dotted(config, "model")
    if not isinstance(model, dict):
        return []
    problems = []
    for key in ("head_lr_mult", "bias_lr_mult", "aux_weight"):
        value = model.get(key)
        if _number(value) and value < 0:
            problems.append(f"model.{key}: {value}; expected >= 0")
    weights = model.get("class_weights")
    if isinstance(weights, list) and all(_number(w) for w in weights):
        if any(w < 0 for w in weights) or not any(w > 0 for w in weights):
            problems.append(
                f"model.class_weights: {weights}; expected weights >= 0, at least one > 0"
            )
    return problems


def seed_problems(config: dict[str, Any]) -> list[str]:
    """``seed_everything``: a seed numpy and Lightning accept (or true / false)."""
    seed = get_dotted(config, "seed_everything")
    if seed is None or isinstance(seed, bool) or is_seed(seed):
        return []
    return [f"seed_everything: {seed!r}; expected true, false or an int in 0..{SEED_MAX}"]


def trainer_problems(config: dict[str, Any]) -> list[str]:
    """``trainer``: something to train, and at least one validation (so a best epoch exists)."""
    trainer = get_dotted(config, "trainer") or {}
    if not isinstance(trainer, dict) or trainer.get("fast_dev_run"):
        return []
    problems = []
    max_epochs = trainer.get("max_epochs")
    max_steps = trainer.get("max_steps")
    steps_set = _number(max_steps) and max_steps != -1
    if steps_set and max_steps < 1:
        problems.append(f"trainer.max_steps: {max_steps}; expected >= 1 (or -1 for no limit)")
    if _number(max_epochs) and max_epochs != -1 and max_epochs < 1:
        problems.append(
            f"trainer.max_epochs: {max_epochs}; expected >= 1 (nothing would be trained "
            "or validated)"
        )
    elif max_epochs == -1 and not steps_set and not trainer.get("max_time"):
        problems.append(
            "trainer.max_epochs: -1 (no limit) with no trainer.max_steps or max_time: the run "
            "would never end; set max_epochs >= 1 or max_steps >= 1"
        )
    limit = trainer.get("limit_val_batches")
    if _number(limit) and limit == 0:
        problems.append(
            f"trainer.limit_val_batches: {limit}; expected > 0: without a validation the run "
            "has no best epoch and no result"
        )
    every = trainer.get("check_val_every_n_epoch")
    if _number(every) and every < 1:
        problems.append(f"trainer.check_val_every_n_epoch: {every}; expected >= 1 (or null)")
    elif _number(every) and _number(max_epochs) and 1 <= max_epochs < every:
        problems.append(
            f"trainer.max_epochs: {max_epochs} is less than trainer.check_val_every_n_epoch: "
            f"{every}; no validation would run, so no best epoch: set max_epochs >= {every} "
            f"or check_val_every_n_epoch <= {max_epochs}"
        )
    interval = trainer.get("val_check_interval")
    # an int interval counts training batches, max_steps optimizer steps: equal without
    # gradient accumulation only
    one_batch_a_step = _accumulation(trainer) == 1
    if (
        every is None
        and isinstance(interval, int)
        and steps_set
        and one_batch_a_step
        and 1 <= max_steps < interval
    ):
        problems.append(
            f"trainer.max_steps: {max_steps} is less than trainer.val_check_interval: "
            f"{interval}; no validation would run: set max_steps >= {interval}"
        )
    return problems


def _count(value: Any) -> bool:
    """A plain int >= 1."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _accumulation(trainer: dict[str, Any]) -> int | None:
    """Training batches per optimizer step (``accumulate_grad_batches``); ``None`` when it is
    not a plain int or a ``GradientAccumulationScheduler`` callback changes it by epoch."""
    if "GradientAccumulationScheduler" in str(trainer.get("callbacks")):
        return None
    accumulate = trainer.get("accumulate_grad_batches", 1)
    return accumulate if _count(accumulate) else None


def _world_size(trainer: dict[str, Any]) -> int | None:
    """Training processes: ``devices`` (a count, or a list of devices) x ``num_nodes``;
    ``None`` when that is not plain ints (``auto``, ``-1``, ``"0,1"``)."""
    devices, nodes = trainer.get("devices", "auto"), trainer.get("num_nodes", 1)
    if isinstance(devices, (list, tuple)):
        devices = len(devices)
    return devices * nodes if _count(devices) and _count(nodes) else None


def _whole(value: Any) -> bool:
    """``None`` or the float ``1.0``: the whole train split (the int ``1`` is one batch)."""
    return value is None or (isinstance(value, float) and value == 1.0)


def max_steps_problems(config: dict[str, Any], train_size: int, batch_size: int) -> list[str]:
    """``trainer.max_steps`` against the data: a run that stops before its first end-of-epoch
    validation has no best epoch and no result.

    seglit's train loader gives each of the ``world`` processes ``train_size // world``
    samples in batches of ``batch_size``, the ragged last batch dropped unless it is the only
    one; Lightning steps the optimizer every ``accumulate_grad_batches`` batches and at the
    end of each epoch, and validates at the end of every ``check_val_every_n_epoch``-th
    epoch, also when that epoch's last step reaches ``max_steps``. Nothing is named when
    anything makes the count uncertain (a limit on the train batches, a validation inside
    the epoch, devices chosen at run time, an accumulation schedule).

    Args:
        config: The resolved config.
        train_size: Samples in the train split.
        batch_size: Training batch size per process.

    Returns:
        At most one problem line.
    """
    trainer = get_dotted(config, "trainer") or {}
    if not isinstance(trainer, dict) or trainer.get("fast_dev_run"):
        return []
    max_steps, every = trainer.get("max_steps"), trainer.get("check_val_every_n_epoch")
    world, accumulate = _world_size(trainer), _accumulation(trainer)
    if not (_count(max_steps) and _count(every) and world and accumulate and _count(batch_size)):
        return []
    if not (
        _whole(trainer.get("val_check_interval"))
        and _whole(trainer.get("limit_train_batches"))
        and not trainer.get("overfit_batches")
    ):
        return []
    max_epochs = trainer.get("max_epochs")
    if _number(max_epochs) and max_epochs != -1 and max_epochs < every:
        return []  # trainer_problems names it
    per_process = train_size // world
    if per_process < 1:
        return []  # the train loader refuses it, naming the sizes
    batches = per_process // batch_size if per_process >= batch_size else 1
    per_epoch = -(-batches // accumulate)  # the epoch's last batch steps too
    first = per_epoch * every
    if max_steps >= first:
        return []
    split = f"{train_size} train images" + (f" / {world} processes" if world > 1 else "")
    split += f" / batch {batch_size}"
    if accumulate > 1:
        split += f" = {plural(batches, 'batch', 'batches')} / accumulate_grad_batches {accumulate}"
    return [
        f"trainer.max_steps: {max_steps} ends before the first validation (after {first} "
        f"steps: {split} = {plural(per_epoch, 'step')} per epoch x check_val_every_n_epoch "
        f"{every}); no validation would run: set max_steps >= {first}"
    ]


def uses_seglit_train_loader(datamodule: Any) -> bool:
    """Whether seglit's own code builds the train loader of ``datamodule`` (a datamodule or
    its class; an epoch is then the train split in batches of ``batch_size``); a user's class
    may load it its own way."""
    cls = datamodule if isinstance(datamodule, type) else type(datamodule)
    methods = [getattr(cls, name, None) for name in ("setup", "train_dataloader", "_loader")]
    return all(getattr(m, "__module__", "").startswith("seglit.") for m in methods)


def _size_problem(key: str, value: Any) -> str | None:
    sizes = value if isinstance(value, (list, tuple)) else [value]
    if len(sizes) not in (1, 2) or not all(isinstance(s, int) and s >= 1 for s in sizes):
        return f"{key}: {value}; expected a positive size (an int, or [height, width])"
    return None


LARGEST_IMAGES = {
    "VOCDataModule": (500, 500),  # VOC 2012 and SBD: at most 500 px a side
    "CityscapesDataModule": (1024, 2048),  # every Cityscapes image
}
"""``(height, width)`` bounding the images of seglit's real datasets, by datamodule class name.
The synthetic datamodules' images are ``min_size``..``max_size`` px a side."""

_SYNTHETIC = (
    "SyntheticVOCDataModule",
    "SyntheticCityscapesDataModule",
    "SyntheticFarCueDataModule",
)


def largest_image(data: Any) -> tuple[int, int] | None:
    """The ``(height, width)`` no training image of the ``data`` config exceeds, when seglit
    knows it before reading any data (its own datamodules); ``None`` otherwise."""
    if not isinstance(data, dict) or not isinstance(data.get("class_path"), str):
        return None
    module, _, name = data["class_path"].rpartition(".")
    if module not in ("seglit.data", "seglit.data.datamodules"):
        return None  # a user's class (or subclass) may read other images
    if name in _SYNTHETIC:
        size = (data.get("init_args") or {}).get("max_size")
        return (size, size) if _number(size) else None
    return LARGEST_IMAGES.get(name)


def crop_problems(data: Any) -> list[str]:
    """``data.init_args.crop_size`` against the data: the training pipeline scales each image
    by at most ``scale_range``'s high end, pads it to the crop, then crops; a crop side larger
    than the largest image side so scaled is padding in every sample (and every epoch)."""
    largest = largest_image(data)
    init = data.get("init_args") if largest is not None else None
    if not isinstance(init, dict):
        return []
    crop, scale = init.get("crop_size"), init.get("scale_range")
    if _size_problem("crop_size", crop) or not isinstance(scale, (list, tuple)):
        return []
    if len(scale) != 2 or not all(map(_number, scale)) or not 0 < scale[0] <= scale[1]:
        return []
    height, width = crop if isinstance(crop, (list, tuple)) and len(crop) == 2 else (crop, crop)
    high = scale[1]
    useful = (int(largest[0] * high), int(largest[1] * high))
    if height <= largest[0] * high and width <= largest[1] * high:
        return []
    shown = list(crop) if isinstance(crop, (list, tuple)) else crop
    return [
        f"data.init_args.crop_size: {shown}; expected at most [{useful[0]}, {useful[1]}] "
        f"(height, width): {data['class_path']}'s images are at most {largest[0]}x"
        f"{largest[1]} px, x{high:g} at scale_range's high end, so a larger crop is always "
        "partly padding"
    ]


def data_problems(config: dict[str, Any]) -> list[str]:
    """``data``: batch sizes >= 1, workers >= 0, crop sizes positive and within the data."""
    init = get_dotted(config, "data.init_args")
    if not isinstance(init, dict):
        return []
    key = "data.init_args"
    problems = []
    for name in ("batch_size", "val_batch_size"):
        value = init.get(name)
        if _number(value) and value < 1:
            problems.append(f"{key}.{name}: {value}; expected >= 1 image per batch")
    workers = init.get("num_workers")
    if _number(workers) and workers < 0:
        problems.append(f"{key}.num_workers: {workers}; expected >= 0")
    if "crop_size" in init:
        problem = _size_problem(f"{key}.crop_size", init["crop_size"])
        if problem:
            problems.append(problem)
    low, high = init.get("min_size"), init.get("max_size")
    if _number(low) and _number(high) and (low < 1 or low > high):
        problems.append(
            f"{key}.min_size: {low}, max_size: {high}; expected 1 <= min_size <= max_size"
        )
    scale = init.get("scale_range")
    if isinstance(scale, (list, tuple)) and len(scale) == 2 and all(map(_number, scale)):
        if not 0 < scale[0] <= scale[1]:
            problems.append(
                f"{key}.scale_range: {list(scale)}; expected 0 < low <= high (a crop's scale)"
            )
    return problems + crop_problems(get_dotted(config, "data"))


def config_problems(config: dict[str, Any], source: str = "") -> list[str]:
    """Every problem of one resolved ``fit`` config, each line prefixed with ``source``.

    Args:
        config: The resolved config (:meth:`seglit.config_builder.ConfigBuilder.resolve`).
        source: What to call the config (e.g. ``variant fcn8s-sum``).
    """
    prefix = f"{source}: " if source else ""
    found = (
        optimizer_problems(config)
        + module_problems(config)
        + trainer_problems(config)
        + seed_problems(config)
        + data_problems(config)
    )
    return [prefix + problem for problem in found]


def runner_problems(progress_interval: float, parallel: int | None) -> list[str]:
    """The recipe runner's own flags."""
    problems = []
    if not progress_interval > 0:
        problems.append(
            f"--progress-interval: {progress_interval}; expected seconds > 0 between progress lines"
        )
    if parallel is not None and parallel < 1:
        problems.append(f"--parallel: {parallel}; expected >= 1")
    return problems


# ------------------------------------------------------------------ jsonargparse's union errors

_CLASS_PROBLEM = re.compile(r"Problem with given class_path '([^']+)':\s*\n\s*(.+)")
_OPTION = re.compile(r"Option '([^']+)' is not accepted")
_KEY_PROBLEM = re.compile(r'Parser key "([^"]+)":\s*\n\s*(.+)')


def import_class(class_path: str) -> Any:
    """The object a config's ``class_path`` names, or ``None`` when it cannot be imported
    (jsonargparse names that problem when it instantiates the class)."""
    module, _, name = class_path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError):
        return None


def _init_parameters(class_path: str) -> list[str]:
    """The ``__init__`` parameter names of a class (and its bases' for ``**kwargs``)."""
    cls = import_class(class_path)
    if cls is None:
        return []
    names: list[str] = []
    for klass in inspect.getmro(cls):
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        try:
            names += [p for p in inspect.signature(init).parameters if p != "self"]
        except (TypeError, ValueError):
            continue
    return list(dict.fromkeys(n for n in names if n not in ("args", "kwargs")))


def _readable(text: str) -> str:
    text = re.sub(r"\bExpected an? ", "expected ", text)
    text = re.sub(r"<class '(?:\w+\.)*(\w+)'>", r"\1", text)
    return re.sub(r"typing\.Literal\[(.*?)\]", r"one of \1", text)


def explain_union_error(key: str, message: str) -> str | None:
    """One line for jsonargparse's "Does not validate against any of the Union subtypes".

    That message hides the real problem under the subtypes; this digs it out: an unknown
    key (with the closest valid one), a wrong type of a nested key, or the class's own error.

    Args:
        key: The config key the error is about (``data``, ``model.net``).
        message: The error's text.

    Returns:
        The line, or ``None`` when the message is not such an error.
    """
    union = "Does not validate against any of the Union subtypes" in message
    match = _CLASS_PROBLEM.search(message)
    if not union and match is None:
        return None
    if match is None:
        errors = message.split("Errors:", 1)[-1].splitlines()
        first = next((e.strip().removeprefix("- ") for e in errors if e.strip()), "")
        if first and not first.startswith("Expected a <class 'NoneType'>"):
            return f"{key}: {_readable(first)}"
        return None
    class_path, problem = match.group(1), match.group(2).strip()
    option = _OPTION.search(problem)
    if option:
        name = option.group(1)
        close = difflib.get_close_matches(name, _init_parameters(class_path), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        return f"{key}.init_args: key {name!r} is not accepted by {class_path}{hint}"
    nested = _KEY_PROBLEM.search(message[match.start() :])
    if nested:
        name, reason = nested.group(1), nested.group(2).strip()
        block = message[match.start() + nested.end() :]
        subtypes = re.search(r"Subtypes: \[(.*)\]", block)
        given = re.search(r"Given value: (.*)", block)
        if "Union subtypes" in reason and subtypes:
            reason = f"expected one of {subtypes.group(1)}"
            if given:
                reason += f", got {given.group(1).strip()!r}"
        return f"{key}.init_args.{name}: {_readable(reason)}"
    return f"{key} ({class_path}): {_readable(problem)}"


# --------------------------------------------- key typos found without importing torch


def _module_file(module: str) -> Path | None:
    """The source file of a module, found without importing it (``None`` if not found)."""
    top, *rest = module.split(".")
    if top == "seglit":
        package = Path(__file__).resolve().parent
    else:
        try:
            spec = importlib.util.find_spec(top)  # a top-level name: nothing is imported
        except (ImportError, ValueError):
            return None
        if spec is None or not spec.origin or not spec.origin.endswith("__init__.py"):
            return None
        package = Path(spec.origin).parent
    root = package.joinpath(*rest)
    for path in (root / "__init__.py", root.with_suffix(".py")):
        if path.is_file():
            return path
    return None


@functools.cache
def _syntax_tree(path: Path) -> ast.Module:
    """The parsed source of ``path`` (read once: every variant of a recipe asks again)."""
    return ast.parse(path.read_text())


def _find_class(module: str, name: str, depth: int = 0) -> tuple[ast.ClassDef, str] | None:
    """The class statement of ``module.name`` and the module that defines it, following
    ``from X import name`` re-exports (lazy ones included) within seglit."""
    path = _module_file(module)
    if path is None or depth > 5:
        return None
    tree = _syntax_tree(path)
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name == name:
            return node, module
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if any(alias.name == name and alias.asname in (None, name) for alias in node.names):
                source = _absolute(module, path, node)
                return _find_class(source, name, depth + 1) if source else None
    return None


def _absolute(module: str, path: Path, node: ast.ImportFrom) -> str | None:
    """The absolute module name of ``from X import ...`` written in ``module``."""
    if node.level == 0:
        return node.module
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    if node.level > 1:
        package = package[: -(node.level - 1)]
    return ".".join(package + ([node.module] if node.module else [])) or None


def _base_modules(module: str) -> dict[str, str]:
    """Name -> module of every ``from X import Name`` and class of ``module`` (for bases)."""
    path = _module_file(module)
    if path is None:
        return {}
    names: dict[str, str] = {}
    for node in ast.walk(_syntax_tree(path)):
        if isinstance(node, ast.ImportFrom) and (source := _absolute(module, path, node)):
            names.update({a.asname or a.name: source for a in node.names})
        elif isinstance(node, ast.ClassDef):
            names[node.name] = module
    return names


def _registers(decorator: ast.expr) -> bool:
    """``@register_model(...)``: a decorator that only records the class."""
    target = decorator.func if isinstance(decorator, ast.Call) else decorator
    return isinstance(target, ast.Name) and target.id == "register_model"


def source_parameters(class_path: str, depth: int = 0) -> list[str] | None:
    """The keyword arguments a seglit class accepts, read from its source (no import).

    ``**kwargs`` passed on to a base class are followed into the base. ``None`` when that
    cannot be settled from seglit's own source (a class outside seglit, a base outside
    seglit that receives ``**kwargs``, a decorated class): then only the real parser can say.
    """
    module, _, name = class_path.rpartition(".")
    found = _find_class(module, name) if depth < 8 else None
    if found is None:
        return None
    node, defined_in = found
    if any(not _registers(d) for d in node.decorator_list):
        return None  # a decorator may change the signature
    init = next(
        (f for f in node.body if isinstance(f, ast.FunctionDef) and f.name == "__init__"), None
    )
    params: list[str] = []
    forwards = init is None
    if init is not None:
        args = init.args
        params = [a.arg for a in args.posonlyargs + args.args + args.kwonlyargs][1:]
        forwards = args.kwarg is not None
    if not forwards:
        return params
    bases = _base_modules(defined_in)
    for base in node.bases:
        if not isinstance(base, ast.Name) or base.id not in bases:
            return None
        inherited = source_parameters(f"{bases[base.id]}.{base.id}", depth + 1)
        if inherited is None:
            return None
        params += inherited
    return list(dict.fromkeys(params)) if node.bases else None


_FIXED_CLASSES = {
    "trainer": "lightning.pytorch.trainer.trainer.Trainer",
    "model": "seglit.module.SegmentationModule",
}
"""Config sections whose class is fixed by the seglit CLI."""

_CLI_KEYS = {"model": ("num_classes", "class_names")}
"""Keys the CLI accepts in a section beyond its class's arguments."""


def quick_problems(config: dict[str, Any], source: str = "") -> list[str]:
    """What can be named without importing torch or Lightning (so in a second or two):
    the values :func:`config_problems` checks, as written, and unknown ``init_args`` keys of
    seglit's own ``data`` and ``model.net`` classes. Finding nothing proves nothing: the
    full check (the CLI's parser) runs next.
    """
    problems = config_problems(config, source)
    prefix = f"{source}: " if source else ""
    for key, class_path in _FIXED_CLASSES.items():
        section = get_dotted(config, key)
        params = source_parameters(class_path) if isinstance(section, dict) else None
        for name in section if params is not None else []:
            if name not in params and name not in _CLI_KEYS.get(key, ()):
                close = difflib.get_close_matches(name, params, n=1)
                hint = f" (did you mean {f'{key}.{close[0]}'!r}?)" if close else ""
                problems.append(f"{prefix}key {f'{key}.{name}'!r} is not accepted{hint}")
    for key in ("data", "model.net", "model.optimizer", "model.lr_scheduler"):
        node = get_dotted(config, key)
        if not isinstance(node, dict) or not isinstance(node.get("class_path"), str):
            continue
        init = node.get("init_args")
        params = source_parameters(node["class_path"]) if isinstance(init, dict) else None
        if params is None:
            continue
        for name in init:
            if name not in params:
                close = difflib.get_close_matches(name, params, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                problems.append(
                    f"{prefix}{key}.init_args: key {name!r} is not accepted by "
                    f"{node['class_path']}{hint}"
                )
    return problems
