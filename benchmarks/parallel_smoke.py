"""Benchmark: a shipped smoke ablation one variant at a time against two side by side.

Variants with ``trainer.accelerator: cpu`` (every smoke) on 2+ cores train two at a time
with ``cores // 2`` threads each (the runner's default, ``--parallel 2``: one thread per
variant on 2 cores);
``--parallel 1`` trains one at a time with every core. This script runs the same shipped
smoke both ways, interleaved by round (A, B, then B, A, ...), each into its own fresh output
folder with the synthetic data cached beforehand, and reports the runner's wall time per
mode, the paired ratio, and whether the two modes gave the same summary digits (they need
not: another thread count sums floats in another order).

    python benchmarks/parallel_smoke.py recipes/ablation_upsample.yaml            # 1 round
    python benchmarks/parallel_smoke.py recipes/ablation_skip.yaml --rounds 2
    python benchmarks/parallel_smoke.py --quick    # 2 tiny variants x 1 epoch (a check)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import fmt, print_table, ratio  # noqa: E402
from runner_overhead import write_recipe  # noqa: E402

MODES = {"serial": ["--parallel", "1"], "parallel2": ["--parallel", "2"]}


def run(recipe: Path, extra: list[str], out: Path) -> tuple[float, float, dict[str, float | None]]:
    """One smoke run: (wall s, peak MiB of the runner's process tree, variant -> mean mIoU).

    The memory is the largest sum of resident memory over the runner and its descendants,
    sampled every 0.2 s (two variants side by side hold two processes' memory at once).
    """
    out.mkdir(parents=True, exist_ok=True)
    log = out / "runner.log"
    start = time.perf_counter()
    with log.open("w") as stream:
        proc = subprocess.Popen(
            [sys.executable, "-m", "seglit.fit", str(recipe), "--smoke", "--out", str(out)] + extra,
            stdout=stream,
            stderr=subprocess.STDOUT,
        )
        peak = 0
        while proc.poll() is None:
            peak = max(peak, tree_rss_kib(proc.pid))
            time.sleep(0.2)
    wall = time.perf_counter() - start
    output = log.read_text()
    if proc.returncode != 0:
        raise SystemExit(f"smoke failed ({extra}):\n{output[-3000:]}")
    (summary,) = out.glob("*/summary.json")
    rows = json.loads(summary.read_text())["rows"]
    return wall, peak / 1024, {r["variant"]: r["mIoU_mean"] for r in rows}


def tree_rss_kib(pid: int) -> int:
    """Resident memory (KiB) of ``pid`` and its descendants, from ``/proc`` (0 if gone)."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(
                line.split(":", 1) for line in status.read_text().splitlines() if ":" in line
            )
        except OSError:
            continue
        child = int(status.parent.name)
        children.setdefault(int(fields.get("PPid", "0").strip()), []).append(child)
        rss[child] = int(fields.get("VmRSS", "0 kB").split()[0])
    total, stack = 0, [pid]
    while stack:
        current = stack.pop()
        total += rss.get(current, 0)
        stack += children.get(current, [])
    return total


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("recipe", type=Path, nargs="?", help="a recipe with a smoke block")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--out", type=Path, help="keep the runs here (default: a temp folder)")
    parser.add_argument("--quick", action="store_true", help="2 tiny variants x 1 epoch")
    args = parser.parse_args(argv)
    if args.recipe is None and not args.quick:
        parser.error("name a recipe, or pass --quick")
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    walls: dict[str, list[float]] = {m: [] for m in MODES}
    peaks: dict[str, list[float]] = {m: [] for m in MODES}
    results: dict[str, dict[str, float | None]] = {}
    with tempfile.TemporaryDirectory(prefix="seglit-parallel-") as tmp:
        root = args.out or Path(tmp)
        if args.quick:
            args.recipe = write_recipe(Path(tmp), variants=2, epochs=1)
        for i in range(args.rounds):
            for mode in list(MODES) if i % 2 == 0 else list(MODES)[::-1]:
                wall, peak, means = run(args.recipe, MODES[mode], root / f"{mode}-{i}")
                walls[mode].append(wall)
                peaks[mode].append(peak)
                results[mode] = means
                print(f"round {i} {mode}: {wall:.1f} s, peak {peak:.0f} MiB", flush=True)
    cores = os.cpu_count()
    print(f"{args.recipe} --smoke on {cores} cores, {args.rounds} interleaved round(s)")
    print_table(
        ["mode", "threads per variant", "runner wall s (median)", "min s", "max s", "peak MiB"],
        [
            [
                mode,
                str(cores if mode == "serial" else max(1, (cores or 1) // 2)),
                fmt(statistics.median(walls[mode]), ".1f"),
                fmt(min(walls[mode]), ".1f"),
                fmt(max(walls[mode]), ".1f"),
                fmt(statistics.median(peaks[mode]), ".0f"),
            ]
            for mode in MODES
        ],
    )
    paired = [ratio(p, d) for p, d in zip(walls["parallel2"], walls["serial"])]
    median = fmt(statistics.median(paired))
    print(f"ratio parallel2 / serial (runner wall, paired by round): {median}")
    mem = ratio(statistics.median(peaks["parallel2"]), statistics.median(peaks["serial"]))
    print(f"mem ratio parallel2 / serial (peak of the runner's process tree): {fmt(mem)}")
    same = results["serial"] == results["parallel2"]
    print(f"same mean mIoU per variant in both modes: {same}")
    if not same:
        for name, value in results["serial"].items():
            other = results["parallel2"].get(name)
            print(f"  {name}: {fmt(value, '.4f')} (serial) vs {fmt(other, '.4f')} (parallel2)")


if __name__ == "__main__":
    main()
