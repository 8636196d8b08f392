"""Shared helpers of the benchmark scripts: interleaved timing, medians and peak memory.

Timing: every candidate runs ``warmup`` untimed calls, then ``rounds`` timed calls
interleaved with the other candidates (A, B, then B, A, ... so neither always goes first);
the median is reported. On CUDA the device is synchronised around every timed call.

Peak memory of one call is measured as *the most memory held during the call above what
was held just before it*, in one of two ways:

* :class:`PeakMemory`, **tensor memory** (train step, metric update, inference):
  * CUDA: ``torch.cuda.max_memory_allocated() - torch.cuda.memory_allocated()`` after
    ``torch.cuda.reset_peak_memory_stats()`` (no allocator cache).
  * CPU: the same quantity for PyTorch's CPU allocator, from the profiler's memory events
    (``torch.profiler.profile(profile_memory=True)``: every allocation and free with its
    size, summed in time order). Deterministic: the same network and batch give the same
    bytes on every run. It counts tensors; memory a library allocates for itself (oneDNN
    scratch, OpenMP stacks) is not seen.
* :class:`ProcessPeak`, **the whole process** (framework overhead, data pipeline, logging:
  Python objects, NumPy/OpenCV buffers, loggers), Linux only: before the call, freed heap
  memory is handed back to the OS (``gc.collect()`` + glibc ``malloc_trim(0)``),
  ``VmRSS`` is read and the kernel's high-water mark is reset
  (``echo 5 > /proc/self/clear_refs``); after the call the peak is
  ``VmHWM - VmRSS(before)``, at page granularity, so it moves by a few percent with the
  allocator's state. ``tracemalloc`` is not used: it does not see C++ allocations.

Where a peak cannot be measured it is reported as unknown (``None``).

Memory that persists between calls (weights, buffers, optimizer state) is not part of a
call's peak; scripts add it back from the tensors' sizes (:func:`state_bytes`) so that
"peak" means weights + optimizer state + the step's transient memory on every device.
"""

from __future__ import annotations

import ctypes
import gc
import json
import random
import statistics
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from tempfile import TemporaryDirectory

import torch
from torch.profiler import ProfilerActivity, profile, record_function

_PROC_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


def set_seed(seed: int) -> None:
    """Seed Python's and torch's generators (all devices)."""
    random.seed(seed)
    torch.manual_seed(seed)


def synchronize(device: torch.device) -> None:
    """Wait for queued work on ``device`` (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _status_bytes(key: str) -> int:
    for line in _PROC_STATUS.read_text().splitlines():
        if line.startswith(key):
            return int(line.split()[1]) * 1024  # the kernel reports kB
    raise KeyError(key)


def _trim_heap() -> None:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):  # not glibc: RSS may include freed heap; still an upper bound
        pass


def rss_peak_supported() -> bool:
    """True when the CPU peak can be measured (Linux with a resettable ``VmHWM``)."""
    try:
        _CLEAR_REFS.write_text("5")
        _status_bytes("VmHWM:")
    except (OSError, KeyError):
        return False
    return True


_WINDOW = "seglit_benchmark_measured_block"


class PeakMemory:
    """Context manager measuring the peak tensor memory of its block above what was held before.

    After the block, ``peak_bytes`` is the peak in bytes (CUDA and CPU), or ``None`` on
    other devices. See the module docstring for the method on each device.

    On the CPU the profiler reports a free only for memory allocated while it was recording.
    A block that frees memory allocated earlier (a training step's ``zero_grad`` freeing the
    previous step's gradients) needs ``prime``: a call run first, unmeasured but recorded,
    which allocates that memory under the profiler's eyes (the previous step).

    Args:
        device: The device the block computes on.
        prime: Called before the measured block, outside the measurement.
    """

    def __init__(self, device: torch.device, prime: Callable[[], object] | None = None) -> None:
        self.device = device
        self.prime = prime
        self.peak_bytes: int | None = None
        self._before = 0
        self._profiler: profile | None = None
        self._window: record_function | None = None

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            if self.prime is not None:
                self.prime()
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._before = torch.cuda.memory_allocated(self.device)
        elif self.device.type == "cpu":
            self._profiler = profile(activities=[ProfilerActivity.CPU], profile_memory=True)
            self._profiler.__enter__()
            if self.prime is not None:
                self.prime()
            self._window = record_function(_WINDOW)
            self._window.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device) - self._before
        elif self._profiler is not None and self._window is not None:
            self._window.__exit__(*exc)
            self._profiler.__exit__(*exc)
            self.peak_bytes = _cpu_allocation_peak(self._profiler)
            self._profiler = self._window = None


def _cpu_allocation_peak(prof: profile) -> int:
    """Largest running sum of the CPU allocations (+) and frees (-) inside the window."""
    with TemporaryDirectory() as tmp:
        path = Path(tmp) / "trace.json"
        prof.export_chrome_trace(str(path))
        events = json.loads(path.read_text()).get("traceEvents", [])
    (window,) = [e for e in events if e.get("name") == _WINDOW and e.get("ph") == "X"]
    start, end = window["ts"], window["ts"] + window["dur"]
    changes = sorted(
        (e["ts"], int(e["args"]["Bytes"]))
        for e in events
        if e.get("name") == "[memory]"
        and e.get("args", {}).get("Device Type") == 0
        and start <= e["ts"] <= end
    )
    held = peak = 0
    for _, nbytes in changes:
        held += nbytes
        peak = max(peak, held)
    return peak


class ProcessPeak:
    """Context manager measuring the process's peak resident memory above what it held before.

    After the block, ``peak_bytes`` is the peak in bytes, or ``None`` where it cannot be
    measured (not Linux, or ``clear_refs`` not writable).
    """

    def __init__(self) -> None:
        self.peak_bytes: int | None = None
        self._before = 0
        self._ok = rss_peak_supported()

    def __enter__(self) -> ProcessPeak:
        if self._ok:
            _trim_heap()
            self._before = _status_bytes("VmRSS:")
            _CLEAR_REFS.write_text("5")  # reset VmHWM to the current RSS
        return self

    def __exit__(self, *exc: object) -> None:
        if self._ok:
            self.peak_bytes = max(0, _status_bytes("VmHWM:") - self._before)


def state_bytes(*objects: torch.nn.Module | torch.optim.Optimizer) -> int:
    """Bytes of the tensors that persist between steps: parameters, buffers, optimizer state."""
    seen: set[int] = set()
    total = 0

    def add(tensors: Iterable[object]) -> None:
        nonlocal total
        for t in tensors:
            if isinstance(t, torch.Tensor) and t.untyped_storage().data_ptr() not in seen:
                seen.add(t.untyped_storage().data_ptr())
                total += t.untyped_storage().nbytes()

    for obj in objects:
        if isinstance(obj, torch.nn.Module):
            add(obj.parameters())
            add(obj.buffers())
        else:
            for state in obj.state.values():
                add(state.values())
    return total


@dataclass
class Samples:
    """One candidate's results: seconds per timed call and the peak bytes of a memory call."""

    seconds: list[float] = field(default_factory=list)
    peak_bytes: int | None = None

    @property
    def median_s(self) -> float:
        """Median time of a call in seconds."""
        return statistics.median(self.seconds)


def interleaved(
    candidates: dict[str, Callable[[], object]],
    device: torch.device,
    warmup: int,
    rounds: int,
    measure_memory: bool = True,
    memory_rounds: int = 1,
) -> dict[str, Samples]:
    """Time ``candidates`` interleaved after ``warmup`` untimed calls of each.

    Round ``i`` runs the candidates in order when ``i`` is even and in reverse when odd.
    Memory is measured on extra, untimed calls after the timed rounds (so the profiler it
    needs on the CPU cannot slow the timed calls down), ``memory_rounds`` per candidate in
    the same alternating order; the median is kept.

    Args:
        candidates: Name -> zero-argument callable doing one unit of work.
        device: Device to synchronise and to measure memory on.
        warmup: Untimed calls of each candidate before timing.
        rounds: Timed calls of each candidate.
        measure_memory: Run the extra calls measuring the peak memory (:class:`PeakMemory`).
        memory_rounds: Extra calls per candidate measuring memory.

    Returns:
        Name -> :class:`Samples`.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    if warmup < 0:
        raise ValueError(f"warmup must be >= 0, got {warmup}")
    names = list(candidates)
    for _ in range(warmup):
        for name in names:
            candidates[name]()
    results = {name: Samples() for name in names}
    for i in range(rounds):
        for name in names if i % 2 == 0 else reversed(names):
            synchronize(device)
            start = time.perf_counter()
            candidates[name]()
            synchronize(device)
            results[name].seconds.append(time.perf_counter() - start)
    if measure_memory:
        peaks: dict[str, list[int]] = {name: [] for name in names}
        for i in range(memory_rounds):
            for name in names if i % 2 == 0 else reversed(names):
                # primed with one call: the state a call leaves behind (a training step's
                # gradients) is then allocated, and freed, under the profiler's eyes
                with PeakMemory(device, prime=candidates[name]) as meter:
                    candidates[name]()
                if meter.peak_bytes is not None:
                    peaks[name].append(meter.peak_bytes)
        for name in names:
            results[name].peak_bytes = int(statistics.median(peaks[name])) if peaks[name] else None
    return results


def warm_median_mib(peaks: Sequence[int]) -> float | None:
    """Median of per-run peaks in MiB, leaving out the first run when there are more.

    The first run in a process pays one-off imports and caches.
    """
    if not peaks:
        return None
    return statistics.median(peaks[1:] or peaks) / 2**20


def ratio(a: float | None, b: float | None) -> float | None:
    """``a / b``, or ``None`` when either is unknown or ``b`` is zero."""
    if a is None or b is None or b == 0:
        return None
    return a / b


def ratio_interval(
    a_seconds: Sequence[float],
    b_seconds: Sequence[float],
    confidence: float = 0.95,
    resamples: int = 2000,
    seed: int = 0,
) -> tuple[float, float]:
    """Bootstrap interval of ``median(a) / median(b)`` over paired rounds.

    Round ``i`` timed ``a_seconds[i]`` and ``b_seconds[i]`` back to back, so rounds are
    resampled as pairs: a slow moment of the machine moves both sides of a round together.

    Args:
        a_seconds: Per-round times of the numerator candidate (seglit).
        b_seconds: Per-round times of the denominator candidate (the peer), same length.
        confidence: Two-sided coverage of the interval.
        resamples: Bootstrap resamples.
        seed: Seed of the resampling.

    Returns:
        ``(low, high)`` percentile interval of the ratio of medians.
    """
    if len(a_seconds) != len(b_seconds) or not a_seconds:
        raise ValueError(
            f"need the same, non-zero number of rounds, got {len(a_seconds)} and {len(b_seconds)}"
        )
    rng = random.Random(seed)
    n = len(a_seconds)
    ratios = []
    for _ in range(resamples):
        picks = [rng.randrange(n) for _ in range(n)]
        ratios.append(
            statistics.median(a_seconds[i] for i in picks)
            / statistics.median(b_seconds[i] for i in picks)
        )
    ratios.sort()
    tail = (1.0 - confidence) / 2.0
    return ratios[int(tail * (resamples - 1))], ratios[int((1.0 - tail) * (resamples - 1))]


def fmt(value: float | None, spec: str = ".3f") -> str:
    """Format a number, or ``n/a`` for ``None``."""
    return "n/a" if value is None else format(value, spec)


def print_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """Print a plain left/right-aligned text table (first column left-aligned)."""
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]

    def line(cells: Sequence[str]) -> str:
        first = str(cells[0]).ljust(widths[0])
        rest = [str(c).rjust(w) for c, w in zip(cells[1:], widths[1:], strict=True)]
        return "  ".join([first, *rest])

    print(line(headers))
    print("  ".join("-" * w for w in widths))
    for row in rows:
        print(line(row))
