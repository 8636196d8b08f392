"""``python -m seglit.export``: every registered model to ONNX, TorchScript and torch.export,
with dynamic height and width, checked against the torch net at sizes it never saw.

The support matrix checked here is the one each model declares when it registers
(``register_model(..., exports=...)``), which ``docs/predict-and-export.md`` renders.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest
import torch
from torch import nn

from seglit.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from seglit.export import (
    CHECK_SIZES,
    EXPORT_JSON,
    FILES,
    FORMATS,
    TRACE_SIZES,
    ExportError,
    LogitsNet,
    export_format,
    main,
    output_dir,
    trace_dynamic,
)
from seglit.models.registry import build_model, export_support_table, list_models, model_spec
from seglit.trained import load_trained, resolve_checkpoint

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "predict-and-export.md"
TEST_SIZES = ((1, 89, 67), (2, 45, 71))
"""``(N, H, W)``: odd, and neither the traced sizes nor the command's own check sizes."""
TOLERANCE = 1e-4
ONNX_REASON = "the ONNX files are checked with onnxruntime (pip install 'seglit[export]')"
ROW = re.compile(r"^\| `(\w+)` \| (yes|no) \| (yes|no) \| (yes|no) \|(.*)\|\s*$")


def declared_support(name: str, fmt: str) -> tuple[bool, str]:
    """(supported, note) as the model declared it at registration."""
    spec = model_spec(name)
    return fmt in spec.exports, spec.export_note


def test_the_sizes_checked_here_are_new_to_the_export():
    for _, h, w in TEST_SIZES:
        assert h % 2 and w % 2 and h not in TRACE_SIZES and w not in TRACE_SIZES
        assert (h, w) not in {(ch, cw) for _, ch, cw in CHECK_SIZES}


def test_the_docs_render_the_registry_support_matrix():
    """The docs page holds the placeholder its build hook fills with the registry's matrix."""
    assert "<!-- export-support-matrix -->" in DOC.read_text()
    table = export_support_table()
    rows = {m.group(1): m.groups()[1:4] for m in map(ROW.match, table.splitlines()) if m}
    assert sorted(rows) == sorted(list_models())
    for name, cells in rows.items():
        assert cells == tuple("yes" if f in model_spec(name).exports else "no" for f in FORMATS)


@pytest.fixture(scope="module")
def traced():
    """``name -> (net, program or the ExportError)``, each model traced once."""
    cache: dict[str, tuple[nn.Module, object]] = {}

    def get(name: str) -> tuple[nn.Module, object]:
        if name not in cache:
            torch.manual_seed(0)
            net = LogitsNet(build_model(name, 5, **model_spec(name).tiny))
            try:
                cache[name] = (net, trace_dynamic(net))
            except ExportError as err:
                cache[name] = (net, err)
        return cache[name]

    return get


def load(fmt: str, path: Path):
    """The exported file as a function of a torch batch (independently of seglit.export)."""
    if fmt == "export":
        return torch.export.load(path).module()
    if fmt == "torchscript":
        return torch.jit.load(path)
    import onnx
    import onnxruntime

    dims = [
        d.dim_param or d.dim_value
        for d in onnx.load(path).graph.input[0].type.tensor_type.shape.dim
    ]
    assert dims == ["batch", 3, "height", "width"]
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda x: torch.from_numpy(session.run(None, {"image": x.numpy()})[0])


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("name", list_models())
def test_every_registered_model_exports_with_dynamic_height_and_width(name, fmt, traced, tmp_path):
    if fmt == "onnx":
        pytest.importorskip("onnxruntime", reason=ONNX_REASON)
    supported, note = declared_support(name, fmt)
    net, program = traced(name)
    if not supported:
        if not isinstance(program, ExportError):
            with pytest.raises(ExportError):
                export_format(fmt, program, net, tmp_path)
        pytest.skip(f"{name} to {fmt} is documented as unsupported: {note}")
    assert not isinstance(program, ExportError), str(program)
    export_format(fmt, program, net, tmp_path)
    run = load(fmt, tmp_path / FILES[fmt])
    for n, h, w in TEST_SIZES:
        x = torch.randn(n, 3, h, w)
        with torch.no_grad():
            expected, got = net(x), run(x)
        assert got.shape == expected.shape == (n, 5, h, w)
        assert (got - expected).abs().max() <= TOLERANCE


@pytest.mark.parametrize("fmt", list(FILES))
def test_deeplab_v2_with_multi_scale_inputs_exports(tmp_path, fmt):
    """DeepLab v2's MSC picks its common size from the scales, not by ordering symbolic
    sizes; its scaled sizes (int(h * s + 0.5)) script to TorchScript's float / int."""
    torch.manual_seed(0)
    spec = {**model_spec("deeplabv2").tiny, "msc_scales": (1.0, 0.75, 0.5)}
    net = LogitsNet(build_model("deeplabv2", 5, **spec))
    export_format(fmt, trace_dynamic(net), net, tmp_path)
    run = load(fmt, tmp_path / FILES[fmt])
    for n, h, w in TEST_SIZES:
        x = torch.randn(n, 3, h, w)
        with torch.no_grad():
            assert (run(x) - net(x)).abs().max() <= TOLERANCE


class DataDependent(nn.Module):
    """A net whose Python code branches on a value: no export can hold it."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 2, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return y if y.mean() > 0 else -y


def test_a_net_that_cannot_be_exported_is_an_error_that_says_why():
    with pytest.raises(ExportError, match="no graph with dynamic H and W: strict torch.export"):
        trace_dynamic(LogitsNet(DataDependent()))


# --------------------------------------------------------------------------- the command


@pytest.fixture(scope="module")
def run_dir(finished_run: Path) -> Path:
    """The session's finished tiny variant (``finished_run``)."""
    return finished_run


@pytest.mark.filterwarnings("ignore:`torch.jit.load` is deprecated:FutureWarning")
def test_the_command_exports_a_trained_run_and_describes_it(run_dir, tmp_path, capsys):
    pytest.importorskip("onnxruntime", reason=ONNX_REASON)
    out = tmp_path / "exported"
    main([str(run_dir), "--out", str(out)])
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-1].endswith(f"3 of 3 formats in {out} ({out / EXPORT_JSON})")
    for fmt in FORMATS:
        assert any(line.startswith(f"seglit.export: {fmt}: {out / FILES[fmt]}") for line in lines)
    meta = json.loads((out / EXPORT_JSON).read_text())
    assert meta["num_classes"] == 5
    assert meta["class_names"] == ["background", "disc", "box", "triangle", "blob"]
    assert meta["mean"] == list(IMAGENET_MEAN) and meta["std"] == list(IMAGENET_STD)
    assert meta["input"]["layout"] == "NCHW"
    assert meta["dynamic_axes"]["image"] == {"0": "batch", "2": "height", "3": "width"}
    assert meta["checkpoint"] == str(resolve_checkpoint(run_dir).resolve())
    assert meta["seglit_version"] and meta["not_exported"] == {}
    assert all(meta["formats"][f]["max_abs_diff"] <= TOLERANCE for f in FORMATS)

    net = load_trained(run_dir).net
    for fmt in FORMATS:
        run = load(fmt, out / FILES[fmt])
        for n, h, w in TEST_SIZES:
            x = torch.randn(n, 3, h, w)
            with torch.no_grad():
                assert (run(x) - net(x)).abs().max() <= TOLERANCE


def test_the_command_defaults_to_a_version_folder_of_the_run(run_dir, capsys):
    main([str(run_dir), "--format", "torchscript", "--checkpoint", "last"])
    out = run_dir / "export" / "version_0"
    assert str(out) in capsys.readouterr().out.strip().splitlines()[-1]
    assert sorted(p.name for p in out.iterdir()) == sorted([EXPORT_JSON, FILES["torchscript"]])
    assert json.loads((out / EXPORT_JSON).read_text())["checkpoint"].endswith("last.ckpt")


def test_formats_that_cannot_be_written_are_named_and_the_exit_status_is_1(
    run_dir, tmp_path, capsys, monkeypatch
):
    def refuse(net):
        raise ExportError("no graph with dynamic H and W: for this test")

    monkeypatch.setattr("seglit.export.trace_dynamic", refuse)
    with pytest.raises(SystemExit) as exit_info:
        main([str(run_dir), "--out", str(tmp_path / "out"), "--format", "export", "torchscript"])
    assert exit_info.value.code == 1
    errors = capsys.readouterr().err.strip().splitlines()
    assert errors == [
        "seglit.export: error: export: no graph with dynamic H and W: for this test",
        "seglit.export: error: torchscript: no graph with dynamic H and W: for this test",
    ]
    meta = json.loads((tmp_path / "out" / EXPORT_JSON).read_text())
    assert meta["formats"] == {} and sorted(meta["not_exported"]) == ["export", "torchscript"]


def test_a_missing_run_or_onnx_is_one_named_line_and_exit_status_2(
    run_dir, tmp_path, capsys, monkeypatch
):
    with pytest.raises(SystemExit) as exit_info:
        main([str(tmp_path / "nope")])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        f"seglit.export: error: run folder {tmp_path / 'nope'} does not exist"
    ]
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        "importlib.util.find_spec",
        lambda name, *a: None if name.startswith("onnx") else find_spec(name, *a),
    )
    with pytest.raises(SystemExit) as exit_info:
        main([str(run_dir), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "onnx and onnxruntime" in line and "seglit[export]" in line
    assert not (tmp_path / "out").exists()


def test_output_dir_refuses_a_used_folder_and_numbers_new_versions(tmp_path: Path) -> None:
    used = tmp_path / "used"
    used.mkdir()
    (used / "net.onnx").write_text("x")
    with pytest.raises(ExportError, match="already holds files"):
        output_dir(tmp_path, str(used))
    assert output_dir(tmp_path, None) == tmp_path / "export" / "version_0"
