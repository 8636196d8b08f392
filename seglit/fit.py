"""``python -m seglit.fit RECIPE``: run every variant of an ablation recipe.

    python -m seglit.fit recipes/ablation_skip.yaml [--smoke [NAME]] [--dry-run]
        [--variant NAME ...] [--out DIR] [--parallel N] [--rerun-changed]
        [--launcher slurm [--wait]] [--download] [--dotted.key=value ...]

For each variant it writes ``DIR/<name>/<variant>/config.yaml`` (reproducible with
``seglit fit --config``), runs it in its own process, and collects ``metrics.json`` from
each into ``DIR/<name>/summary.{md,csv,json}``. Re-running the same command resumes:
variants finished under the same fingerprint are skipped and left untouched, an
interrupted one continues from its newest readable checkpoint. ``DIR`` defaults to
``runs/`` (``runs/smoke/`` with ``--smoke``; ``--smoke NAME`` applies the recipe's
``smokes.NAME`` block and writes ``runs/smoke/<name>-NAME/``). The work itself is
:mod:`seglit.runner`'s.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from seglit.recipe import RecipeError, add_smoke_argument, recipe_and_smoke
from seglit.runner import RunnerError, RunnerOptions, run_recipe
from seglit.runner.launcher_block import LAUNCHERS


def parse_overrides(extra: list[str]) -> dict[str, Any]:
    """Parse ``--dotted.key=value`` / ``--dotted.key value`` arguments (values are YAML).

    Raises:
        RecipeError: An argument that is not an override, or one without a value.
    """
    overrides: dict[str, Any] = {}
    i = 0
    while i < len(extra):
        arg = extra[i]
        if not arg.startswith("--") or len(arg) < 3:
            raise RecipeError(
                f"unexpected argument {arg!r}; overrides look like --trainer.max_epochs=2"
            )
        key, sep, value = arg[2:].partition("=")
        if not sep:
            if i + 1 >= len(extra) or extra[i + 1].startswith("--"):
                raise RecipeError(f"override {arg!r} has no value; write {arg}=VALUE")
            value = extra[i + 1]
            i += 1
        try:
            overrides[key] = yaml.safe_load(value)
        except yaml.YAMLError as err:
            reason = str(getattr(err, "problem", None) or err).splitlines()[0]
            raise RecipeError(
                f"override --{key}: {value!r} is not a YAML value ({reason})"
            ) from None
        i += 1
    return overrides


def build_parser(prog: str = "python -m seglit.fit") -> argparse.ArgumentParser:
    """The argument parser of ``python -m seglit.fit`` (``prog``: the name usage lines show,
    ``seglit run`` for the same command there)."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description="Run every variant of an ablation recipe and summarise the results.",
        epilog="Any --dotted.key=value argument overrides that config key in every variant. "
        "Exit status: 0 all finished, 1 a variant failed, 2 a recipe/config/data problem "
        "(nothing trained), 3 the output folder cannot be written.",
    )
    # optional only for `--smoke RECIPE`, where argparse takes the recipe for a smoke's name
    parser.add_argument("recipe", type=Path, nargs="?", help="the recipe YAML file")
    add_smoke_argument(
        parser,
        "apply the recipe's smoke block (synthetic data, tiny models, CPU), or with "
        "NAME its smokes.NAME block (outputs under the recipe name <name>-NAME); "
        "outputs go to runs/smoke/ unless --out is given",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="list and check the variants without training"
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=None,
        metavar="NAME",
        help="run only this variant (repeatable)",
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="output folder (default runs/, or runs/smoke/)"
    )
    parser.add_argument("--verbose", action="store_true", help="stream each run's output")
    parser.add_argument(
        "--parallel",
        type=int,
        default=None,
        metavar="N",
        help="run N variants side by side: variant i on GPU slot i %% N "
        "(CUDA_VISIBLE_DEVICES), CPU variants sharing the cores; default 2 when every "
        "variant has trainer.accelerator cpu and there are 2+ cores (cores // 2 threads "
        "each), else 1",
    )
    parser.add_argument(
        "--rerun-changed",
        action="store_true",
        help="when a variant's folder holds the result of another config, move it to "
        "_archive/ and train the variant again (default: stop and name the differences)",
    )
    parser.add_argument(
        "--progress-interval",
        type=float,
        default=30.0,
        metavar="S",
        help="without a terminal, print the progress line every S seconds (default 30)",
    )
    parser.add_argument(
        "--launcher",
        choices=LAUNCHERS,
        default=None,
        help="submit the unfinished variants as one SLURM job array plus a summary job "
        "(submitit; resources from the recipe's launcher: block) and return; "
        "submitit-local runs the same jobs on this machine (for tests)",
    )
    parser.add_argument(
        "--wait",
        action="store_true",
        help="with --launcher: follow the jobs (live lines as a local run) until the summary",
    )
    parser.add_argument(
        "--download",
        action="store_true",
        help="prepare a dataset whose root is missing before training "
        "(python -m seglit.data prepare NAME --download; VOC and SBD)",
    )
    parser.add_argument(
        "--export-sweep",
        type=Path,
        default=None,
        metavar="FILE",
        help="write a W&B sweep config (method grid) over the variants and exit",
    )
    return parser


def main(
    argv: list[str] | None = None, fork: bool = False, prog: str = "python -m seglit.fit"
) -> int:
    """Entry point; returns the exit status (0 when every selected variant finished).

    Args:
        argv: The arguments (default: the command line's).
        fork: Start single-device variants as forked children of this process, which saves
            the ~10 s of imports per variant. Only the command line (``python -m
            seglit.fit``) does: a process that already ran torch work cannot fork safely
            (see :mod:`seglit.runner.launch`).
        prog: The command's name in usage and error lines.
    """
    parser = build_parser(prog)
    args, extra = parser.parse_known_args(argv)
    recipe_and_smoke(parser, args)
    try:
        overrides = parse_overrides(extra)
        stray = ["--wait"] * args.wait + [f"--{k}" for k in overrides if k.startswith("launcher.")]
        if stray and not args.launcher:
            raise RecipeError(f"{' '.join(stray)}: only with --launcher slurm")
        if args.parallel is not None and args.parallel < 1:
            raise RecipeError(f"--parallel must be >= 1, got {args.parallel}")
        if args.recipe.is_dir():
            raise RecipeError(
                f"{args.recipe} is a folder; give a recipe file, e.g. "
                f"{args.recipe / 'ablation_skip.yaml'}"
            )
        options = RunnerOptions(
            recipe=args.recipe,
            smoke=args.smoke,
            dry_run=args.dry_run,
            variants=args.variant,
            out=args.out,
            verbose=args.verbose,
            parallel=args.parallel,
            export_sweep=args.export_sweep,
            rerun_changed=args.rerun_changed,
            progress_interval=args.progress_interval,
            fork=fork,
            overrides=overrides,
            extra=extra,
            launcher=args.launcher,
            wait=args.wait,
            download=args.download,
        )
        return run_recipe(options)
    except RecipeError as err:
        print(f"seglit.fit: error: {err}", file=sys.stderr)
        return 2
    except RunnerError as err:
        print(f"seglit.fit: error: {err}", file=sys.stderr)
        return err.code
    except KeyboardInterrupt as err:  # Ctrl-C: 130; SIGTERM / SIGHUP (launch.Stopped): 143 / 129
        return 128 + getattr(err, "signum", 2)


if __name__ == "__main__":
    raise SystemExit(main(fork=True))
