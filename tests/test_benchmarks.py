"""Smoke test: every benchmark script's ``--quick`` mode runs to the end and prints the
ratios of time and of peak memory.

Parametrized over the files present in ``benchmarks/`` (``common.py`` is a helper, not a
benchmark), so a new script is covered without touching this file. This checks that the
scripts work, not how fast seglit is: speed is measured by running the scripts
(docs/performance.md), never by timed tests. The scripts run in this process (``runpy``),
as ``python SCRIPT --quick`` would run them, without paying for a new interpreter's
imports each; torch's thread count and the warning filters are restored after each.
"""

from __future__ import annotations

import re
import statistics
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
HELPERS = {"common.py"}
SCRIPTS = sorted(p for p in BENCHMARKS.glob("*.py") if p.name not in HELPERS)
TIMEOUT_S = 240  # --quick promises < 3 minutes on 2 cores
# A line naming the ratio ("ratio", "seglit/peer", "seglit / reference", ...) ...
RATIO_NAME = re.compile(r"ratio|seglit\s*/\s*\w+", re.IGNORECASE)
NUMBER = re.compile(r"\d+\.\d+")
CRF_REFERENCE_MISSING = "benchmarks/crf.py's reference, pydensecrf2, is not installed"


def run_script(script: Path, args: list[str], folder: Path, monkeypatch, capsys) -> str:
    """Run ``python SCRIPT ARGS`` in this process from ``folder``; its stdout (exit 0 asserted)."""
    import runpy
    import warnings

    import torch

    monkeypatch.chdir(folder)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("SEGLIT_CACHE", str(folder / "cache"))
    monkeypatch.setattr(sys, "argv", [str(script), *args])
    threads = torch.get_num_threads()
    code = 0
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            runpy.run_path(str(script), run_name="__main__")
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    finally:
        torch.set_num_threads(threads)
    out = capsys.readouterr()
    assert code == 0, (
        f"{script.name} {' '.join(args)} exited {code}:\n{(out.out + out.err)[-3000:]}"
    )
    return out.out


def assert_prints_ratios(name: str, stdout: str) -> None:
    """A line names a time ratio with a number after it, and a memory ratio likewise."""
    # The ratio's name may sit in a table header with the numbers on the rows below it.
    lines = stdout.splitlines()
    named = [i for i, line in enumerate(lines) if RATIO_NAME.search(line)]
    assert named, f"{name} printed no ratio:\n{stdout[-3000:]}"
    assert any(NUMBER.search(line) for line in lines[named[0] :]), (
        f"{name} names a ratio but prints no number after it:\n{stdout[-3000:]}"
    )
    mem = [i for i, line in enumerate(lines) if "mem ratio" in line]
    assert mem and any(NUMBER.search(line) for line in lines[mem[0] :]), (
        f"{name} printed no memory ratio:\n{stdout[-3000:]}"
    )


def test_benchmarks_found() -> None:
    assert SCRIPTS, f"no benchmark scripts in {BENCHMARKS}"


@pytest.mark.parametrize("script", SCRIPTS, ids=[p.stem for p in SCRIPTS])
def test_benchmark_runs_and_prints_ratio(script: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    if script.name == "crf.py":
        pytest.skip("benchmarks/crf.py --quick: test_crf_benchmark_quick checks it")
    assert_prints_ratios(
        script.name, run_script(script, ["--quick"], tmp_path, monkeypatch, capsys)
    )


@pytest.mark.parametrize("reference", [True, False], ids=["pydensecrf2", "seglit-only"])
def test_crf_benchmark_quick(reference: bool, tmp_path: Path, monkeypatch, capsys) -> None:
    """benchmarks/crf.py --quick: labels agree with pydensecrf2's; without it, seglit alone."""
    if reference:
        pytest.importorskip("pydensecrf.densecrf", reason=CRF_REFERENCE_MISSING)
    extra = [] if reference else ["--no-reference"]
    stdout = run_script(BENCHMARKS / "crf.py", ["--quick", *extra], tmp_path, monkeypatch, capsys)
    rows = [line.split() for line in stdout.splitlines()]
    rows = [row for row in rows if row[:1] in (["3"], ["12"])]  # the two noise levels
    assert len(rows) == 2, stdout
    if reference:  # noise, seglit, reference, ratio, CI, agree %, MiBs, mem ratio
        assert all(len(row) == 9 and float(row[5]) >= 99.0 for row in rows), stdout
        assert_prints_ratios("crf.py", stdout)
    else:
        assert all(len(row) == 3 and float(row[1]) > 0 for row in rows), stdout


def _common():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        import common
    finally:
        sys.path.remove(str(BENCHMARKS))
    return common


def test_ratio_interval_brackets_the_ratio_of_medians() -> None:
    common = _common()
    peer = [1.0, 1.3, 0.9, 2.0, 1.1, 1.2, 1.05, 0.95]
    assert common.ratio_interval([0.9 * t for t in peer], peer) == pytest.approx((0.9, 0.9))
    # a slow moment hits both sides of a round: the pairing keeps the interval narrow
    seglit = [0.95 * t + 0.01 * (-1) ** i for i, t in enumerate(peer)]
    low, high = common.ratio_interval(seglit, peer)
    assert low <= statistics.median(seglit) / statistics.median(peer) <= high < 1.0
    with pytest.raises(ValueError, match="same, non-zero number of rounds"):
        common.ratio_interval([1.0], [1.0, 2.0])


def test_train_step_reports_images_per_second_and_mfu(tmp_path: Path, monkeypatch, capsys) -> None:
    """The GPU columns (item 5) computed on the CPU: FLOPs counted, MFU a positive percent."""
    args = [
        *("--pairs", "unet_resnet34", "--crop", "64", "--batch-size", "1"),
        *("--steps", "1", "--warmup", "0", "--peak-tflops", "0.05", "--device", "cpu"),
    ]
    stdout = run_script(BENCHMARKS / "train_step.py", args, tmp_path, monkeypatch, capsys)
    lines = stdout.splitlines()
    header = next(line for line in lines if line.startswith("pair"))
    assert "seglit img/s" in header and "peer MFU" in header
    row = next(line for line in lines if line.startswith("unet_resnet34"))
    mfus = [float(cell[:-1]) for cell in row.split() if cell.endswith("%")]
    assert len(mfus) == 2 and all(m > 0 for m in mfus), row


def test_cpu_peak_memory_is_exact_and_sees_frees_of_primed_memory() -> None:
    import torch

    common = _common()
    kept: list[torch.Tensor] = []

    def step() -> None:
        kept.clear()  # frees the 1 MB the previous call left behind
        transient = torch.empty(1_000_000)  # 4 MB
        del transient
        kept.append(torch.empty(250_000))  # 1 MB, held until the next call

    step()  # unprofiled: the profiler never sees this 1 MB allocated ...
    with common.PeakMemory(torch.device("cpu")) as unprimed:
        step()
    # ... so its free is not counted: +4 MB is the peak
    assert unprimed.peak_bytes == 4_000_000
    step()
    with common.PeakMemory(torch.device("cpu"), prime=step) as primed:
        step()
    # -1 MB (the primed call's tensor), +4 MB, -4 MB, +1 MB: 3 MB above the start
    assert primed.peak_bytes == 3_000_000


def test_process_peak_sees_touched_memory() -> None:
    import numpy as np

    common = _common()
    if not common.rss_peak_supported():
        pytest.skip("needs Linux /proc/self/clear_refs")
    with common.ProcessPeak() as meter:
        block = np.ones(64 * 2**20, dtype=np.uint8)  # 64 MiB, every page touched
        del block
    assert meter.peak_bytes is not None and meter.peak_bytes >= 60 * 2**20
