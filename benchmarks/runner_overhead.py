"""Benchmark: what the recipe runner adds to its variants' own fits.

A recipe of ``--variants`` tiny variants (U-Net on the built-in synthetic data,
``--epochs`` each) is run by ``python -m seglit.fit`` twice per round, interleaved:

* ``fork``: the runner as users start it, each single-device variant forked from the
  runner (torch, Lightning and the CLI already imported);
* ``subprocess``: the same runner starting each variant as ``python -m seglit fit`` in a
  new process (what multi-device variants need, and what seglit did before).

For every variant the **start cost** is the time the console reports for it ("done in")
minus the fit's own wall time recorded in its ``metrics.json`` (``wall_time_s``, from the
fit's start to its end): parsing, building, the W&B run's start and end, process start.
The table gives medians; the ratio compares the runner's whole wall time with the sum of
its variants' fits. Memory: the peak resident memory of the runner's children
(``RUSAGE_CHILDREN``), per mode.

    python benchmarks/runner_overhead.py            # 6 variants x 2 epochs, 3 rounds
    python benchmarks/runner_overhead.py --quick    # 1 variant x 1 epoch, 1 round (it runs)
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from seglit.run_folder import read_metrics

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import fmt, print_table, ratio  # noqa: E402

MODES = {
    "fork": "import sys; from seglit.fit import main; raise SystemExit(main(fork=True))",
    "subprocess": "import sys; from seglit.fit import main; raise SystemExit(main(fork=False))",
}
DONE = re.compile(r"\] (\S+): done in ([\d.]+)s")


def write_recipe(folder: Path, variants: int, epochs: int) -> Path:
    """A recipe of ``variants`` seeds of a tiny U-Net on the synthetic data."""
    recipe = {
        "name": "overhead",
        "ablation": {"seeds": list(range(variants))},
        "trainer": {
            "accelerator": "cpu",
            "max_epochs": epochs,
            "enable_progress_bar": False,
            "enable_model_summary": False,
        },
        "model": {
            "net": {"class_path": "seglit.models.UNet", "init_args": {"base_width": 4, "depth": 2}}
        },
        "data": {
            "class_path": "seglit.data.SyntheticVOCDataModule",
            "init_args": {"num_train": 16, "num_val": 4, "batch_size": 8, "crop_size": 48},
        },
        "smoke": {},  # already tiny: its smoke (parallel_smoke.py --quick) is the recipe itself
    }
    path = folder / "overhead.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def run(mode: str, recipe: Path, out: Path) -> tuple[float, list[float], float, float]:
    """One runner call: (wall s, start cost per variant, sum of fits s, children's peak MiB)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    proc = subprocess.run(
        # one variant at a time: the runner's wall time is then comparable with its fits' sum
        [sys.executable, "-c", MODES[mode], str(recipe), "--out", str(out), "--parallel", "1"],
        capture_output=True,
        text=True,
        cwd=out.parent,
    )
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{mode} runner failed:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    costs, fits = [], 0.0
    for name, done in DONE.findall(proc.stdout):
        fit = read_metrics(out / "overhead" / name).wall_time_s
        costs.append(float(done) - fit)
        fits += fit
    return wall, costs, fits, max(peak, before) / 1024


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", type=int, default=6)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1 variant x 1 epoch, 1 round")
    args = parser.parse_args(argv)
    if args.quick:
        args.variants, args.epochs, args.rounds = 1, 1, 1
    walls = {m: [] for m in MODES}
    costs = {m: [] for m in MODES}
    fits = {m: [] for m in MODES}
    peaks = {m: [] for m in MODES}
    env_cache = tempfile.mkdtemp(prefix="seglit-overhead-cache-")
    os.environ.setdefault("SEGLIT_CACHE", env_cache)
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    with tempfile.TemporaryDirectory(prefix="seglit-overhead-") as tmp:
        recipe = write_recipe(Path(tmp), args.variants, args.epochs)
        for i in range(args.rounds):
            for mode in list(MODES) if i % 2 == 0 else list(MODES)[::-1]:
                out = Path(tmp) / f"{mode}-{i}"
                out.mkdir()
                wall, cost, fit, peak = run(mode, recipe, out)
                walls[mode].append(wall)
                costs[mode] += cost
                fits[mode].append(fit)
                peaks[mode].append(peak)
    print(
        f"{args.variants} variants x {args.epochs} epochs of a tiny U-Net, {args.rounds} "
        "interleaved round(s); start cost = console 'done in' - the fit's own wall time"
    )
    rows = []
    for mode in MODES:
        wall, fit = statistics.median(walls[mode]), statistics.median(fits[mode])
        rows.append(
            [
                mode,
                fmt(statistics.median(costs[mode]), ".2f"),
                fmt(max(costs[mode]), ".2f"),
                fmt(wall, ".1f"),
                fmt(fit, ".1f"),
                fmt(ratio(wall, fit), ".2f"),
                fmt(statistics.median(peaks[mode]), ".0f"),
            ]
        )
    print_table(
        ["mode", "start cost s (median)", "max s", "runner wall s", "sum of fits s",
         "ratio wall / fits", "children peak MiB"],
        rows,
    )  # fmt: skip
    paired = [ratio(f, s) for f, s in zip(walls["fork"], walls["subprocess"])]
    print(
        f"ratio fork / subprocess (runner wall, paired by round): {fmt(statistics.median(paired))}"
    )
    print(
        "mem ratio fork / subprocess (children's peak): "
        f"{fmt(ratio(statistics.median(peaks['fork']), statistics.median(peaks['subprocess'])))}"
    )


if __name__ == "__main__":
    main()
