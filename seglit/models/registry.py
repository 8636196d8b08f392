"""The model registry: models register themselves where they are defined.

.. code-block:: python

    @register_model("fcn8s", tiny={"backbone": "vgg16", "backbone_width": 4})
    class FCN8s(FCN): ...

``tiny`` is a configuration that builds in milliseconds; the zoo tests
(``tests/models/test_zoo.py``) run every registered model with it, and with every value of
every ``Literal``/``bool`` knob of its signature, so a new model needs no test code.
``exports`` declares the export formats the model supports (all of :data:`EXPORT_FORMATS`
unless it says otherwise, with ``export_note`` saying why); the export tests and the docs'
support matrix (:func:`export_support_table`) read it from here.

:mod:`seglit.models` imports every module of its package, so a new model is one new file.
"""

from __future__ import annotations

import copy
import importlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from torch import nn

from seglit.models.base import check_contract

ModelT = TypeVar("ModelT", bound=type[nn.Module])

EXPORT_FORMATS = ("onnx", "torchscript", "export")
"""The formats of ``python -m seglit.export``: ONNX, TorchScript, ``torch.export``."""


@dataclass(frozen=True)
class ModelSpec:
    """A registered model.

    Attributes:
        name: Registry name (lower case), e.g. ``"fcn8s"``.
        cls: The model class; ``cls(num_classes, **knobs)`` builds it.
        tiny: Knobs of a tiny configuration for tests (milliseconds to build and run).
        exports: The export formats (of :data:`EXPORT_FORMATS`) the model supports.
        export_note: Why a format is not supported (empty when all are).
    """

    name: str
    cls: type[nn.Module]
    tiny: dict[str, Any] = field(default_factory=dict)
    exports: tuple[str, ...] = EXPORT_FORMATS
    export_note: str = ""


_MODELS: dict[str, ModelSpec] = {}


def register_model(
    name: str,
    *,
    tiny: dict[str, Any] | None = None,
    exports: tuple[str, ...] = EXPORT_FORMATS,
    export_note: str = "",
) -> Callable[[ModelT], ModelT]:
    """Class decorator that registers a model under ``name``.

    Args:
        name: Registry name (case-insensitive).
        tiny: Knobs of a tiny configuration for the zoo tests.
        exports: The export formats the model supports (default: all of
            :data:`EXPORT_FORMATS`); the export tests check that the others fail.
        export_note: Why the missing formats are not supported (required when some are).

    Raises:
        ValueError: ``name`` is already registered by another class, an unknown export
            format, or unsupported formats without a note.
    """
    unknown = sorted(set(exports) - set(EXPORT_FORMATS))
    if unknown:
        raise ValueError(
            f"model {name!r}: unknown export format(s) {unknown}; expected some of "
            f"{', '.join(EXPORT_FORMATS)}"
        )
    if set(exports) != set(EXPORT_FORMATS) and not export_note:
        raise ValueError(f"model {name!r}: say why it does not export (export_note=...)")

    def decorator(cls: ModelT) -> ModelT:
        key = name.lower()
        known = _MODELS.get(key)
        if known is not None and known.cls.__qualname__ != cls.__qualname__:
            raise ValueError(f"model name {key!r} is already registered by {known.cls.__name__}")
        _MODELS[key] = ModelSpec(key, cls, dict(tiny or {}), tuple(exports), export_note)
        return cls

    return decorator


def unregister_model(name: str) -> None:
    """Remove a registered model (for tests that register throwaway models)."""
    _MODELS.pop(name.lower(), None)


def _registry() -> dict[str, ModelSpec]:
    importlib.import_module("seglit.models")  # the zoo's modules register on import
    return _MODELS


def list_models() -> list[str]:
    """Names accepted by :func:`build_model`, in registration order."""
    return list(_registry())


def model_spec(name: str) -> ModelSpec:
    """The :class:`ModelSpec` registered under ``name`` (case-insensitive).

    Raises:
        ValueError: Unknown name; the message lists the registered ones.
    """
    registry = _registry()
    key = name.lower()
    if key not in registry:
        raise ValueError(f"unknown model {name!r}; expected one of: {', '.join(registry)}")
    return registry[key]


def model_knobs(name: str) -> dict[str, inspect.Parameter]:
    """The model's keyword arguments (its knobs), without ``self`` and ``num_classes``."""
    params = inspect.signature(model_spec(name).cls.__init__).parameters
    return {k: p for k, p in params.items() if k not in ("self", "num_classes")}


def export_support_table() -> str:
    """The support matrix of ``docs/predict-and-export.md`` as Markdown, one row per model.

    The docs build renders it from the registry (``docs/hooks.py``), so it cannot drift.
    """
    lines = [
        "| model | " + " | ".join(EXPORT_FORMATS) + " | note |",
        "|---|" + "---|" * len(EXPORT_FORMATS) + "---|",
    ]
    for spec in _registry().values():
        cells = ["yes" if fmt in spec.exports else "no" for fmt in EXPORT_FORMATS]
        lines.append(f"| `{spec.name}` | " + " | ".join(cells) + f" | {spec.export_note} |")
    return "\n".join(lines)


def build_model(name: str, num_classes: int, **kwargs: Any) -> nn.Module:
    """Build a registered model and check it follows the model contract.

    Args:
        name: One of :func:`list_models` (case-insensitive).
        num_classes: Number of output classes.
        **kwargs: The model class's keyword arguments (knobs).

    Raises:
        ValueError: Unknown model name, unknown knob, or invalid knob value.
    """
    spec = model_spec(name)
    knobs = model_knobs(name)
    unknown = sorted(set(kwargs) - set(knobs))
    if unknown:
        raise ValueError(
            f"unknown argument(s) {unknown} for model {spec.name!r}; valid: {', '.join(knobs)}"
        )
    model = spec.cls(num_classes, **copy.deepcopy(kwargs))
    check_contract(model)
    return model


__all__ = [
    "EXPORT_FORMATS",
    "ModelSpec",
    "build_model",
    "export_support_table",
    "list_models",
    "model_knobs",
    "model_spec",
    "register_model",
    "unregister_model",
]
