"""``python -m seglit.export RUN_DIR``: a trained net as ONNX, TorchScript and ``torch.export``.

.. code-block:: bash

    python -m seglit.export runs/ablation_skip/unet-concat-s0 \\
        [--checkpoint best|last|PATH] [--format onnx torchscript export] [--out DIR] [--opset N]

What is exported is the net alone: a normalised float32 image batch ``image (N, 3, H, W)``
to ``logits (N, C, H, W)`` at the input's size, with N, H and W dynamic. The caller
normalises (``(rgb / 255 - mean) / std`` with the datamodule's mean and std, written to
``export.json``); the variant's inference settings (sliding window, multi-scale and flip
TTA, dense CRF) are not part of the export.

How (torch 2.x): :func:`trace_dynamic` runs ``torch.export.export`` (TorchDynamo, strict)
with N, H and W symbolic. The nets' Python code branches on shapes (crop or pad a skip
connection when the sizes differ, resize only when they differ, pad to the output stride
when needed); export records each branch as a guard on H and W, which would tie the graph to
the example's sizes. The example sizes (:data:`TRACE_SIZES`, 127 and 129: every level of a
floor-rounding or a ceil-rounding encoder is odd there) make every such branch take its
general path (the crop, pad or resize happens), which is also right where the branch is not
taken (a pad by 0, a crop to the full size, a resize to the same size change nothing). The
guards are dropped and the graph is checked against the eager net at 32 sizes
(:func:`sweep_sizes`: every H and W modulo 32), so an export that is not general fails here
rather than in the field. From that one graph:

* ``export``: ``model.pt2`` (``torch.export.save``; ``torch.export.load(path).module()``);
* ``torchscript``: ``model.torchscript.pt``, the graph compiled by ``torch.jit.script``
  (``torch.jit.load``);
* ``onnx``: ``model.onnx``, the TorchScript module through ``torch.onnx.export`` with
  dynamic axes (the TorchScript-based exporter: it needs only ``onnx``; onnxruntime checks
  it). Install with ``pip install 'seglit[export]'``.

Every file is loaded back and run against the torch net at :data:`CHECK_SIZES`
(1x3x97x131 and 2x3x61x83, sizes the export never saw); a max abs difference of the logits
above the tolerance (1e-4) fails that format. A format that cannot be exported or checked
is one line ``seglit.export: error: <format>: <why>`` and exit status 1; the others are
still written. ``export.json`` records what was written and what was not.
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import math
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.export import Dim, ExportedProgram

import seglit
from seglit.io import atomic_write_text
from seglit.models.registry import EXPORT_FORMATS
from seglit.run_folder import new_output_dir
from seglit.trained import BEST, TrainedRunError, check_trained, load_trained

if TYPE_CHECKING:
    from seglit.trained import TrainedNet

PROG = "seglit.export"
FORMATS = EXPORT_FORMATS
FILES = {"onnx": "model.onnx", "torchscript": "model.torchscript.pt", "export": "model.pt2"}
EXPORT_JSON = "export.json"
INPUT_NAME, OUTPUT_NAME = "image", "logits"
DYNAMIC_AXES = {0: "batch", 2: "height", 3: "width"}
"""Dynamic axes of both the input and the output."""
MIN_SIZE = 32
"""Smallest H and W the exported graphs are declared (and checked) for."""
TRACE_SIZES = (127, 129)
"""Square example sizes tried in turn: all levels odd for floor (127) and ceil (129) rounding."""
CHECK_SIZES = ((1, 97, 131), (2, 61, 83))
"""``(N, H, W)`` every written file is checked at (never the traced sizes)."""
TOLERANCE = 1e-4
"""Largest accepted max abs difference between exported and torch logits."""
DEFAULT_OPSET = 17
ONNX_EXTRA = "pip install 'seglit[export]' (onnx and onnxruntime)"


class ExportError(RuntimeError):
    """A format that cannot be exported or does not match the torch net; says why."""


class LogitsNet(nn.Module):
    """The net as exported: logits ``(N, C, H, W)`` at the input's size, in eval mode.

    A dict output (torchvision style) gives its ``"out"``; logits at another size are
    resized bilinearly, as :func:`seglit.inference.predict_logits` does.

    Args:
        net: Maps ``(N, 3, H, W)`` images to logits.
    """

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the normalised batch ``x``."""
        out = self.net(x)
        if isinstance(out, dict):
            out = out["out"]
        if out.shape[-2:] != x.shape[-2:]:
            out = F.interpolate(out, size=x.shape[-2:], mode="bilinear", align_corners=False)
        return out


# ------------------------------------------------------------------------------- tracing


def sweep_sizes() -> list[tuple[int, int, int]]:
    """32 ``(N, H, W)``: every H and every W modulo 32 once, from :data:`MIN_SIZE`."""
    return [(1 + i % 2, MIN_SIZE + i, MIN_SIZE + (11 * i) % 32) for i in range(32)]


def _reason(err: BaseException) -> str:
    """An error in one line: its first two lines (torch puts the explanation second)."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()][:2]
    text = ": ".join(lines) or type(err).__name__
    return text if len(text) <= 300 else text[:297] + "..."


def max_abs_diff(
    run: Callable[[Any], Any], net: nn.Module, sizes: Sequence[tuple[int, int, int]]
) -> tuple[float, tuple[int, int, int]]:
    """The largest ``|run(x) - net(x)|`` over random inputs of ``sizes``, and where.

    Raises:
        ExportError: ``run`` fails or returns another shape (names the size).
    """
    generator = torch.Generator().manual_seed(0)
    worst, where = 0.0, sizes[0]
    for n, h, w in sizes:
        x = torch.randn(n, 3, h, w, generator=generator)
        with torch.no_grad():
            expected = net(x)
            try:
                got = torch.as_tensor(run(x))
            except Exception as err:
                raise ExportError(f"fails at {n}x3x{h}x{w}: {_reason(err)}") from None
        if got.shape != expected.shape:
            raise ExportError(
                f"gives shape {tuple(got.shape)} at {n}x3x{h}x{w}, the net {tuple(expected.shape)}"
            )
        diff = float((got - expected).abs().max())
        if math.isnan(diff):
            raise ExportError(f"gives NaN at {n}x3x{h}x{w}")
        if diff > worst:
            worst, where = diff, (n, h, w)
    return worst, where


def drop_shape_asserts(program: ExportedProgram) -> int:
    """Remove the runtime shape assertions export recorded for the branches it traced.

    Returns:
        How many were removed.
    """
    graph = program.graph_module.graph
    asserts = [n for n in graph.nodes if n.target is torch.ops.aten._assert_scalar.default]
    for node in asserts:
        graph.erase_node(node)
    graph.eliminate_dead_code()
    program.graph_module.recompile()
    return len(asserts)


def _export(module: nn.Module, size: int, strict: bool) -> ExportedProgram:
    example = torch.randn(2, 3, size, size)  # batch 2: a batch of 1 would be specialised
    dims = {0: Dim("batch", min=1), 2: Dim.AUTO(min=MIN_SIZE), 3: Dim.AUTO(min=MIN_SIZE)}
    return torch.export.export(
        module,
        (example,),
        dynamic_shapes={"x": dims},
        strict=strict,
        prefer_deferred_runtime_asserts_over_guards=True,
    )


def _dynamic_axes_kept(program: ExportedProgram) -> bool:
    """Whether N, H and W of the program's input are all symbolic."""
    (name,) = program.graph_signature.user_inputs
    image = next(n for n in program.graph.nodes if n.name == name)
    shape = image.meta["val"].shape
    return all(isinstance(shape[d], torch.SymInt) for d in DYNAMIC_AXES)


def trace_dynamic(net: nn.Module) -> ExportedProgram:
    """``torch.export`` of ``net`` (eval mode) that is valid for every N and every H, W >= 32.

    Tries each of :data:`TRACE_SIZES`, strict (TorchDynamo) first and non-strict when
    strict fails; drops the shape guards of the traced branches
    (:func:`drop_shape_asserts`) and keeps the first graph that matches ``net`` within
    :data:`TOLERANCE` at every size of :func:`sweep_sizes`.

    Args:
        net: Maps ``(N, 3, H, W)`` to logits at the input's size (see :class:`LogitsNet`).

    Raises:
        ExportError: No graph was found; the message gives each attempt's reason.
    """
    reasons: list[str] = []
    for size in TRACE_SIZES:
        program = None
        for strict in (True, False):
            try:
                program = _export(net, size, strict)
                break
            except Exception as err:
                mode = "strict" if strict else "non-strict"
                reasons.append(f"{mode} torch.export fails: {_reason(err)}")
        if program is None:
            continue
        traced = f"the graph traced at {size}x{size}"
        if not _dynamic_axes_kept(program):
            reasons.append(f"{traced} has a static N, H or W")
            continue
        drop_shape_asserts(program)
        try:
            diff, (n, h, w) = max_abs_diff(program.module(), net, sweep_sizes())
        except ExportError as err:
            reasons.append(f"{traced} {err}")
            continue
        if diff <= TOLERANCE:
            return program
        reasons.append(f"{traced} differs from the net by {diff:.2g} at {n}x3x{h}x{w}")
    raise ExportError("no graph with dynamic H and W: " + "; ".join(dict.fromkeys(reasons)))


# ------------------------------------------------------------------------------- formats


# Symbolic-size arithmetic of an exported graph -> the TorchScript builtins on ints / floats
# (DeepLab v2's multi-scale sizes: int(h * s + 0.5) traces to sym_float and trunc).
_SYMBOLIC_BUILTINS = {
    torch.sym_min: min,
    torch.sym_max: max,
    torch.sym_float: float,
    math.trunc: int,
}


def to_torchscript(program: ExportedProgram) -> torch.jit.ScriptModule:
    """The exported graph as a TorchScript module (``torch.jit.script`` of its FX graph).

    The graph is flattened for TorchScript: the input guard call and the pytree input and
    output handling are dropped, operator overloads become their packets
    (``aten.conv2d.default`` -> ``aten.conv2d``), symbolic sizes become ``x.size(d)`` and
    ``sym_min`` / ``sym_max`` / ``sym_float`` / ``trunc`` the builtins ``min`` / ``max`` /
    ``float`` / ``int``; sizes therefore stay dynamic.
    """
    module = program.module()
    graph = copy.deepcopy(module.graph)
    graph.set_codegen(torch.fx.graph.CodeGen())
    for node in list(graph.nodes):
        if node.op == "call_module":  # export's input-guard check: not scriptable
            graph.erase_node(node)
        elif node.op == "call_function" and node.target is torch.ops.aten.sym_size.int:
            node.op, node.target = "call_method", "size"
        elif node.op == "call_function" and node.target in _SYMBOLIC_BUILTINS:
            node.target = _SYMBOLIC_BUILTINS[node.target]
        elif node.op == "call_function" and hasattr(node.target, "overloadpacket"):
            node.target = node.target.overloadpacket
        elif node.op == "output":
            (result,) = node.args
            if isinstance(result, (tuple, list)) and len(result) == 1:
                node.args = (result[0],)  # one tensor, not a tuple of one
    return torch.jit.script(torch.fx.GraphModule(module, graph))


def quiet_deprecations() -> None:
    """Silence (inside ``warnings.catch_warnings()``) the notices that TorchScript and the
    TorchScript-based ONNX exporter are deprecated; the files are checked numerically."""
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    warnings.filterwarnings("ignore", message="The TorchScript type system")


def write_format(fmt: str, program: ExportedProgram, path: Path, opset: int) -> None:
    """Write ``program`` as ``fmt`` (one of :data:`FORMATS`) to ``path``.

    Raises:
        ExportError: The conversion fails (first line of the reason).
    """
    try:
        with warnings.catch_warnings():
            quiet_deprecations()
            if fmt == "export":
                torch.export.save(program, path)
            elif fmt == "torchscript":
                torch.jit.save(to_torchscript(program), path)
            else:
                size = max(TRACE_SIZES)
                torch.onnx.export(
                    to_torchscript(program),
                    (torch.randn(2, 3, size, size),),
                    path,
                    dynamo=False,
                    input_names=[INPUT_NAME],
                    output_names=[OUTPUT_NAME],
                    dynamic_axes={INPUT_NAME: DYNAMIC_AXES, OUTPUT_NAME: DYNAMIC_AXES},
                    opset_version=opset,
                )
    except Exception as err:
        path.unlink(missing_ok=True)
        raise ExportError(_reason(err)) from None


def load_format(fmt: str, path: Path) -> Callable[[Any], Any]:
    """Load an exported file and return a function from a torch batch to torch logits."""
    if fmt == "export":
        return torch.export.load(path).module()
    if fmt == "torchscript":
        with warnings.catch_warnings():
            quiet_deprecations()
            return torch.jit.load(path)
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda x: torch.from_numpy(session.run(None, {INPUT_NAME: x.numpy()})[0])


@dataclass
class FormatResult:
    """One written and checked format."""

    file: str
    max_abs_diff: float
    checked_sizes: list[str]
    """``NxCxHxW`` of the inputs it was checked at."""


def export_format(
    fmt: str,
    program: ExportedProgram,
    net: nn.Module,
    out: Path,
    opset: int = DEFAULT_OPSET,
    tolerance: float = TOLERANCE,
) -> FormatResult:
    """Write one format into ``out``, load it back and check it against ``net``.

    Raises:
        ExportError: The format cannot be written, loaded or run, or its logits differ by
            more than ``tolerance`` (the file is removed).
    """
    path = out / FILES[fmt]
    write_format(fmt, program, path, opset)
    try:
        diff, (n, h, w) = max_abs_diff(load_format(fmt, path), net, CHECK_SIZES)
    except Exception as err:
        path.unlink(missing_ok=True)
        raise ExportError(f"the written {path.name} {_reason(err)}") from None
    if not diff <= tolerance:
        path.unlink(missing_ok=True)
        raise ExportError(
            f"{path.name} differs from the torch net by {diff:.3g} at {n}x3x{h}x{w} "
            f"(tolerance {tolerance:g})"
        )
    return FormatResult(path.name, diff, [f"{n}x3x{h}x{w}" for n, h, w in CHECK_SIZES])


# ---------------------------------------------------------------------------- the command


def export_metadata(
    trained: TrainedNet,
    results: dict[str, FormatResult],
    failures: dict[str, str],
    opset: int = DEFAULT_OPSET,
    tolerance: float = TOLERANCE,
) -> dict[str, Any]:
    """The content of ``export.json``."""
    axes = {str(k): v for k, v in DYNAMIC_AXES.items()}
    formats = {fmt: asdict(result) for fmt, result in results.items()}
    if "onnx" in formats:
        formats["onnx"]["opset"] = opset
    return {
        "num_classes": trained.num_classes,
        "class_names": trained.class_names,
        "palette": [list(c) for c in trained.palette],
        "mean": list(trained.mean),
        "std": list(trained.std),
        "input": {
            "name": INPUT_NAME,
            "layout": "NCHW",
            "dtype": "float32",
            "normalisation": "(rgb / 255 - mean) / std, rgb in 0..255",
            "min_size": MIN_SIZE,
        },
        "output": {"name": OUTPUT_NAME, "layout": "NCHW", "meaning": "logits at input size"},
        "dynamic_axes": {INPUT_NAME: axes, OUTPUT_NAME: axes},
        "formats": formats,
        "not_exported": failures,
        "not_included": "the variant's inference settings (slide, TTA, CRF): the net alone",
        "inference": asdict(trained.inference),
        "checkpoint": str(trained.checkpoint.resolve()),
        "run_dir": str(trained.run_dir.resolve()),
        "net_class": f"{type(trained.net).__module__}.{type(trained.net).__qualname__}",
        "seglit_version": seglit.__version__,
        "torch_version": torch.__version__,
        "tolerance": tolerance,
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(
        prog=f"python -m {PROG}",
        description="Export a finished variant's net to ONNX, TorchScript and torch.export.",
    )
    parser.add_argument("run_dir", type=Path, help="run folder, e.g. runs/<recipe>/<variant>")
    parser.add_argument(
        "--checkpoint", default=BEST, help="best (default), last, or a checkpoint path"
    )
    parser.add_argument(
        "--format", nargs="+", choices=FORMATS, default=list(FORMATS), dest="formats"
    )
    parser.add_argument("--out", help="output folder (default: <run_dir>/export/version_<n>)")
    parser.add_argument("--opset", type=int, default=DEFAULT_OPSET, help="ONNX opset")
    parser.add_argument(
        "--tolerance", type=float, default=TOLERANCE, help="largest accepted max abs difference"
    )
    return parser.parse_args(argv)


def check_onnx_installed() -> None:
    """Raise :class:`ExportError` naming the extra unless onnx and onnxruntime import."""
    missing = [m for m in ("onnx", "onnxruntime") if importlib.util.find_spec(m) is None]
    if missing:
        raise ExportError(f"ONNX export needs {' and '.join(missing)}: {ONNX_EXTRA}")


def output_dir(run_dir: Path, out: str | None) -> Path:
    """``out`` (which must be new or empty), or ``<run_dir>/export/version_<n>``."""
    return new_output_dir(run_dir, out, "export", ExportError)


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``python -m seglit.export``.

    Exit status: 0 when every requested format was written and checked, 1 when some were
    not (each named on one line), 2 when nothing could start (a named error).
    """
    args = parse_args(argv)
    formats = list(dict.fromkeys(args.formats))
    try:
        found = check_trained(args.run_dir, args.checkpoint)
        if "onnx" in formats:
            check_onnx_installed()
        out = output_dir(found.run_dir, args.out)
        trained = load_trained(found.run_dir, str(found.checkpoint))
    except (ExportError, TrainedRunError) as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"{PROG}: {found.run_dir} ({trained.checkpoint.name}) -> {', '.join(formats)}")
    net = LogitsNet(trained.net)
    results: dict[str, FormatResult] = {}
    failures: dict[str, str] = {}
    start = time.perf_counter()
    try:
        program = trace_dynamic(net)
    except ExportError as err:
        failures = {fmt: str(err) for fmt in formats}
    else:
        print(f"{PROG}: traced with dynamic N, H, W ({time.perf_counter() - start:.1f} s)")
    out.mkdir(parents=True, exist_ok=True)
    for fmt in formats:
        if fmt in failures:
            continue
        try:
            results[fmt] = result = export_format(
                fmt, program, net, out, args.opset, args.tolerance
            )
        except ExportError as err:
            failures[fmt] = str(err)
            continue
        sizes = ", ".join(result.checked_sizes)
        print(
            f"{PROG}: {fmt}: {out / result.file} (max abs diff {result.max_abs_diff:.2g} "
            f"at {sizes})"
        )
    for fmt, reason in failures.items():
        print(f"{PROG}: error: {fmt}: {reason}", file=sys.stderr)
    metadata = export_metadata(trained, results, failures, args.opset, args.tolerance)
    atomic_write_text(out / EXPORT_JSON, json.dumps(metadata, indent=2) + "\n")
    print(f"{PROG}: {len(results)} of {len(formats)} formats in {out} ({out / EXPORT_JSON})")
    if failures:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
