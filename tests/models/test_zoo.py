"""Every registered model, every value of every choice knob: the model contract holds.

The checks are plain functions of a registry name, parametrized over the registry: a new
model (one file with ``@register_model(name, tiny={...})``) is tested with no test code, as
``test_a_new_model_needs_one_file_and_no_test_code`` proves with a throwaway model.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import typing
from pathlib import Path
from typing import Any, Literal

import pytest
import torch

from seglit.models import build_model, list_models
from seglit.models.base import check_contract
from seglit.models.registry import model_knobs, model_spec, unregister_model

NUM_CLASSES = 5
ODD_SIZES = [(33, 35), (57, 101)]


def knob_values(name: str) -> list[tuple[str, Any]]:
    """(knob, value) for every value of every ``Literal``/``bool`` knob other than the tiny one."""
    spec = model_spec(name)
    hints = typing.get_type_hints(spec.cls.__init__)
    cases = []
    for knob, param in model_knobs(name).items():
        hint = hints.get(knob)
        if hint is bool:
            values: tuple[Any, ...] = (False, True)
        elif typing.get_origin(hint) is Literal:
            values = typing.get_args(hint)
        else:
            continue
        current = spec.tiny.get(knob, param.default)
        if knob == "pretrained":
            continue  # needs weights in the hub cache: tests/models/test_api.py covers it
        cases += [(knob, v) for v in values if v != current]
    return cases


def forward_backward(model: torch.nn.Module, size: tuple[int, int] = (33, 35)) -> None:
    """Train-mode forward + backward on a batch of 2, then an eval forward on one image."""
    model.train()
    out = model(torch.randn(2, 3, *size))
    outputs = out if isinstance(out, dict) else {"out": out}
    assert set(outputs) <= {"out", "aux"} and "out" in outputs
    # "aux" may be one tensor or a list of them (DeepLab v2's per-scale logits)
    flat = [(key, t) for key, v in outputs.items() for t in (v if isinstance(v, list) else [v])]
    for key, logits in flat:
        assert logits.shape == (2, NUM_CLASSES, *size), key
        assert torch.isfinite(logits).all(), key
    sum(t.square().mean() for _, t in flat).backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"parameters without gradient: {missing[:5]}"
    model.eval()
    with torch.no_grad():
        y = model(torch.randn(1, 3, *size))
    assert isinstance(y, torch.Tensor) and y.shape == (1, NUM_CLASSES, *size)


# ------------------------------------------------------------------ checks of one model


def check_tiny_forward_backward(name: str) -> None:
    torch.manual_seed(0)
    model = build_model(name, NUM_CLASSES, **model_spec(name).tiny)
    check_contract(model)
    forward_backward(model)


def check_odd_input_sizes(name: str) -> None:
    model = build_model(name, NUM_CLASSES, **model_spec(name).tiny).eval()
    with torch.no_grad():
        for size in ODD_SIZES:
            assert model(torch.randn(1, 3, *size)).shape == (1, NUM_CLASSES, *size)


def check_bad_input_is_refused(name: str) -> None:
    model = build_model(name, NUM_CLASSES, **model_spec(name).tiny).eval()
    with pytest.raises(ValueError, match="input channels"):
        model(torch.randn(1, 4, 32, 32))
    with pytest.raises(ValueError, match="4-D input"):
        model(torch.randn(3, 32, 32))
    with pytest.raises(ValueError, match="num_classes"):
        build_model(name, 0, **model_spec(name).tiny)


def check_knob_value(name: str, knob: str, value: Any) -> None:
    """The value builds a working model, or is refused with a message naming the knob."""
    torch.manual_seed(0)
    kwargs = {**model_spec(name).tiny, knob: value}
    try:
        model = build_model(name, NUM_CLASSES, **kwargs)
    except ValueError as err:
        assert knob in str(err), f"{name}({knob}={value!r}) refused without naming it: {err}"
        return
    forward_backward(model)


def check_cli_signature(name: str) -> None:
    """The Lightning CLI (jsonargparse) can type, parse and build it from YAML."""
    from jsonargparse import ArgumentParser

    spec = model_spec(name)
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--net", type=torch.nn.Module)
    path = f"{spec.cls.__module__}.{spec.cls.__qualname__}"
    init = {"num_classes": NUM_CLASSES, **spec.tiny}
    config = parser.parse_object({"net": {"class_path": path, "init_args": init}})
    net = parser.instantiate_classes(config).net
    assert type(net) is spec.cls
    bad = {**init, "no_such_knob": 1}
    with pytest.raises(Exception, match="no_such_knob"):
        parser.parse_object({"net": {"class_path": path, "init_args": bad}})


MODEL_CHECKS = [
    check_tiny_forward_backward,
    check_odd_input_sizes,
    check_bad_input_is_refused,
    check_cli_signature,
]


# ------------------------------------------------------------------ parametrized over the zoo


@pytest.mark.parametrize("check", MODEL_CHECKS, ids=lambda c: c.__name__.removeprefix("check_"))
@pytest.mark.parametrize("name", list_models())
def test_model(name: str, check) -> None:
    check(name)


KNOB_CASES = [(name, knob, value) for name in list_models() for knob, value in knob_values(name)]


@pytest.mark.parametrize(
    ("name", "knob", "value"), KNOB_CASES, ids=[f"{n}-{k}={v}" for n, k, v in KNOB_CASES]
)
def test_knob_value(name: str, knob: str, value: Any) -> None:
    check_knob_value(name, knob, value)


def test_every_model_has_choice_knobs_or_is_smp() -> None:
    """The knob sweep is not silently empty."""
    assert {n for n, _, _ in KNOB_CASES} >= set(list_models()) - {"smp"}


# -------------------------------------------------------------------- adding a model

THROWAWAY = '''
from typing import Literal

from torch import nn

from seglit.models.base import SegmentationModel
from seglit.models.blocks import Upsample
from seglit.models.knobs import UpsampleMode
from seglit.models.registry import register_model


@register_model("throwaway", tiny={"width": 4})
class Throwaway(SegmentationModel):
    """One strided conv, a 1x1 classifier and an upsampling: the smallest honest model."""

    def __init__(
        self,
        num_classes: int,
        width: int = 16,
        upsample: UpsampleMode = "bilinear",
        act: Literal["relu", "gelu"] = "relu",
    ) -> None:
        super().__init__(num_classes)
        self.output_stride = 2
        self.backbone = nn.Sequential(
            nn.Conv2d(3, width, 3, 2, 1), nn.ReLU() if act == "relu" else nn.GELU()
        )
        self.classifier = nn.Conv2d(width, num_classes, 1)
        self.up = Upsample(num_classes, num_classes, 2, upsample)

    def forward(self, x):
        self.check_input(x)
        return self.up(self.classifier(self.backbone(x)), x.shape[-2:])
'''


def test_a_new_model_needs_one_file_and_no_test_code(tmp_path: Path) -> None:
    path = tmp_path / "throwaway_model.py"
    path.write_text(THROWAWAY)
    spec = importlib.util.spec_from_file_location("throwaway_model", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["throwaway_model"] = module
    try:
        spec.loader.exec_module(module)
        assert "throwaway" in list_models()
        for check in MODEL_CHECKS:
            check("throwaway")
        cases = knob_values("throwaway")
        assert {k for k, _ in cases} == {"upsample", "act"}
        for knob, value in cases:
            check_knob_value("throwaway", knob, value)
    finally:
        unregister_model("throwaway")
        sys.modules.pop("throwaway_model", None)
    assert "throwaway" not in list_models()


REPO = Path(__file__).resolve().parents[2]


def test_a_new_model_file_is_picked_up_by_the_zoo_api_and_export_tests(tmp_path: Path) -> None:
    """One new file in ``seglit/models/`` and nothing else: the test files run over it unchanged.

    A copy of the package gets the throwaway model as ``seglit/models/probe.py`` (no import
    line, no test edit, no docs row); the zoo, API and export test files, run on that copy,
    must each run and pass tests of it.
    """
    copy = tmp_path / "repo"
    shutil.copytree(REPO / "seglit", copy / "seglit", ignore=shutil.ignore_patterns("__pycache__"))
    for rel in ("tests/conftest.py", "tests/models", "tests/test_export.py", "pyproject.toml"):
        src, dst = REPO / rel, copy / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, dst)
    (copy / "docs").mkdir()
    shutil.copy(REPO / "docs" / "predict-and-export.md", copy / "docs")
    probe = THROWAWAY.replace('register_model("throwaway"', 'register_model("probe"')
    (copy / "seglit" / "models" / "probe.py").write_text(probe)
    files = ["tests/models/test_zoo.py", "tests/models/test_api.py", "tests/test_export.py"]
    selection = "probe or test_list_models_names_every_family or test_cli_list_and_describe"
    env = {**os.environ, "PYTHONPATH": str(copy)}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "0", "-p", "no:cacheprovider", "-rA", "-q"]
        + ["-k", selection, *files],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    passed = [line for line in result.stdout.splitlines() if line.startswith("PASSED")]
    for file in files:
        ran = [line for line in passed if line.split()[1].startswith(file)]
        assert ran, f"{file} ran no test of the new model:\n{result.stdout[-3000:]}"
    probe_tests = [line for line in passed if "probe" in line]
    assert any("test_zoo.py" in line for line in probe_tests), result.stdout[-3000:]
    assert sum("test_export.py" in line for line in probe_tests) == 3, result.stdout[-3000:]


def test_a_model_that_breaks_the_contract_is_refused(tmp_path: Path) -> None:
    from torch import nn

    from seglit.models.registry import register_model

    @register_model("contract_breaker")
    class Breaker(nn.Module):
        def __init__(self, num_classes: int) -> None:
            super().__init__()
            self.num_classes = num_classes  # no backbone attribute, no output_stride

    try:
        with pytest.raises(TypeError, match="Breaker breaks the model contract.*backbone"):
            build_model("contract_breaker", 3)
    finally:
        unregister_model("contract_breaker")


# ------------------------------------------------------------------ size-specific families


@pytest.mark.parametrize("size", [(99, 101), (16, 17), (375, 500)])
def test_unet_any_size(size: tuple[int, int]) -> None:
    model = build_model("unet", 2, base_width=2, depth=5).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, *size)).shape == (1, 2, *size)


@pytest.mark.parametrize("upsample", ["nearest", "transposed"])
@pytest.mark.parametrize("size", [(70, 90), (1, 1), (31, 97)])
def test_unet_resnet_any_size(size: tuple[int, int], upsample: str) -> None:
    tiny = model_spec("unet_resnet").tiny
    model = build_model("unet_resnet", 2, **{**tiny, "upsample": upsample}).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 3, *size)).shape == (1, 2, *size)
