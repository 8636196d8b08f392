"""The model registry: models register themselves where they are defined.

.. code-block:: python

    @register_model("fcn8s", tiny={"backbone": "vgg16", "backbone_width": 4})
    class FCN8s(FCN): ...

``tiny`` is a configuration that builds in milliseconds; the zoo tests
(``tests/models/test_zoo.py``) run every registered model with it, and with every value of
every ``Literal``/``bool`` knob of its signature, so a new model needs no test code.
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


@dataclass(frozen=True)
class ModelSpec:
    """A registered model.

    Attributes:
        name: Registry name (lower case), e.g. ``"fcn8s"``.
        cls: The model class; ``cls(num_classes, **knobs)`` builds it.
        tiny: Knobs of a tiny configuration for tests (milliseconds to build and run).
    """

    name: str
    cls: type[nn.Module]
    tiny: dict[str, Any] = field(default_factory=dict)


_MODELS: dict[str, ModelSpec] = {}


def register_model(name: str, *, tiny: dict[str, Any] | None = None) -> Callable[[ModelT], ModelT]:
    """Class decorator that registers a model under ``name``.

    Args:
        name: Registry name (case-insensitive).
        tiny: Knobs of a tiny configuration for the zoo tests.

    Raises:
        ValueError: ``name`` is already registered by another class.
    """

    def decorator(cls: ModelT) -> ModelT:
        key = name.lower()
        known = _MODELS.get(key)
        if known is not None and known.cls.__qualname__ != cls.__qualname__:
            raise ValueError(f"model name {key!r} is already registered by {known.cls.__name__}")
        _MODELS[key] = ModelSpec(key, cls, dict(tiny or {}))
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
    "ModelSpec",
    "build_model",
    "list_models",
    "model_knobs",
    "model_spec",
    "register_model",
    "unregister_model",
]
