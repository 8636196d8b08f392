"""Benchmark: how fast seglit's command lines start, against importing Lightning.

``python -m seglit.fit --help``, ``python -m seglit.data --help``, ``seglit --help`` (``python
-m seglit --help``) and the non-Lightning verbs' ``seglit run|predict --help`` import neither
torch nor Lightning nor W&B; neither does ``python -m seglit.fit RECIPE --dry-run`` with a key
typo (``--data.init_args.num_trian=3``, ``--trainer.max_epoch=2``): it is named from the
classes' source before anything heavy loads (target: at most 3 s). ``python -m
seglit.models`` imports torch and the model zoo only. A valid ``--smoke --dry-run`` resolves
every variant with the Lightning CLI's parser and builds each distinct config once on the
meta device: it pays for importing Lightning, and little more. (``seglit export --help``
still imports torch: :mod:`seglit.export` does at the top.)
Each command runs ``--rounds`` times, interleaved with the peer (``python -c "import
lightning"``, what a command that imports its whole stack up front pays) and a bare
``python -c pass``; the table gives median wall times, the ratio of each command to the
peer, and the heavy modules the command loaded (from ``sys.modules`` after it ran). The
machine is shared and noisy: read the ratios, not the absolute times.

    python benchmarks/startup.py            # 5 rounds
    python benchmarks/startup.py --quick    # 1 round
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import fmt, print_table, ratio  # noqa: E402

HEAVY = ("torch", "lightning", "wandb", "segmentation_models_pytorch", "matplotlib")
RECIPE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "recipes",
                      "ablation_skip.yaml")  # fmt: skip
COMMANDS = {
    "seglit --help": ("seglit", ["--help"]),
    "seglit run --help": ("seglit", ["run", "--help"]),
    "seglit predict --help": ("seglit", ["predict", "--help"]),
    "seglit export --help": ("seglit", ["export", "--help"]),
    "seglit.fit --help": ("seglit.fit", ["--help"]),
    "seglit.data --help": ("seglit.data", ["--help"]),
    "seglit.models (list)": ("seglit.models", []),
    # a key typo in a recipe's data.init_args / on the command line: named before torch loads
    "seglit.fit typo num_trian": (
        "seglit.fit",
        [RECIPE, "--smoke", "--dry-run", "--data.init_args.num_trian=3"],
    ),
    "seglit.fit typo max_epoch": (
        "seglit.fit",
        [RECIPE, "--smoke", "--dry-run", "--trainer.max_epoch=2"],
    ),
    # a valid recipe: every variant resolved by the Lightning CLI's parser, built on meta
    "seglit.fit --smoke --dry-run (valid)": ("seglit.fit", [RECIPE, "--smoke", "--dry-run"]),
}
PEER = "import lightning"
BARE = "pass"
REPORT = (  # the process's resident high-water mark (reset by exec, unlike ru_maxrss)
    "import sys\n"
    "hwm = open('/proc/self/status').read().split('VmHWM:')[1].split()[0]\n"
    "print('RSS', hwm, file=sys.stderr)\n"
)

RUN_MODULE = """
import runpy, sys
sys.argv = [{module!r}, *{args!r}]
try:
    runpy.run_module({module!r}, run_name="__main__")
except SystemExit:
    pass
print("LOADED", ",".join(m for m in {heavy!r} if m in sys.modules), file=sys.stderr)
"""


def timed(code: str) -> tuple[float, str, float]:
    """Wall seconds of ``python -c code``, the heavy modules it loaded, its peak RSS (MiB)."""
    start = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", code + "\n" + REPORT], capture_output=True, text=True
    )
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{code!r} failed:\n{proc.stderr[-2000:]}")
    lines = proc.stderr.splitlines()
    loaded = [line.removeprefix("LOADED").strip() for line in lines if line.startswith("LOADED")]
    rss = [float(line.split()[1]) / 1024 for line in lines if line.startswith("RSS ")]
    return elapsed, loaded[-1] if loaded else "", rss[-1]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="1 round")
    args = parser.parse_args(argv)
    rounds = 1 if args.quick else args.rounds
    codes = {
        name: RUN_MODULE.format(module=module, args=cmd_args, heavy=HEAVY)
        for name, (module, cmd_args) in COMMANDS.items()
    }
    codes["peer: " + PEER] = PEER
    codes["bare python"] = BARE
    times: dict[str, list[float]] = {name: [] for name in codes}
    peaks: dict[str, list[float]] = {name: [] for name in codes}
    loaded: dict[str, str] = {}
    for i in range(rounds):
        order = list(codes) if i % 2 == 0 else list(codes)[::-1]
        for name in order:
            elapsed, heavy, rss = timed(codes[name])
            times[name].append(elapsed)
            peaks[name].append(rss)
            loaded[name] = heavy
    peer = statistics.median(times["peer: " + PEER])
    peer_rss = statistics.median(peaks["peer: " + PEER])
    print(f"median wall time and peak RSS of {rounds} interleaved run(s) each")
    print_table(
        ["command", "median s", "ratio to peer", "peak MiB", "mem ratio", "heavy modules loaded"],
        [
            [name, fmt(statistics.median(t), ".2f"), fmt(ratio(statistics.median(t), peer)),
             fmt(statistics.median(peaks[name]), ".0f"),
             fmt(ratio(statistics.median(peaks[name]), peer_rss)), loaded.get(name, "") or "-"]
            for name, t in times.items()
        ],
    )  # fmt: skip


if __name__ == "__main__":
    main()
