"""``python -m seglit.fit RECIPE``: run every variant of an ablation recipe.

    python -m seglit.fit recipes/ablation_skip.yaml [--smoke] [--dry-run]
        [--variant NAME ...] [--out DIR] [--dotted.key=value ...]

For each variant it writes ``DIR/<name>/<variant>/config.yaml`` (reproducible with
``seglit fit --config``), runs it in its own process, and collects ``metrics.json`` from
each into ``DIR/<name>/summary.{md,csv,json}``. Re-running the same command resumes:
finished variants are skipped and left untouched, an interrupted one continues from its
``last.ckpt``.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import secrets
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from seglit.plots import write_plots
from seglit.recipe import (
    Recipe,
    RecipeError,
    Variant,
    deep_merge,
    get_dotted,
    load_recipe,
    set_dotted,
)
from seglit.report import build_rows, read_metrics, write_summary
from seglit.tracking import find_offline_runs
from seglit.wandb_media import log_summary_run

LOGGER_CLASS = "seglit.tracking.WandbLogger"


class RunnerError(RuntimeError):
    """An error of the recipe runner (bad arguments, conflicting outputs)."""


def parse_overrides(extra: list[str]) -> dict[str, Any]:
    """Parse ``--dotted.key=value`` / ``--dotted.key value`` arguments (values are YAML)."""
    overrides: dict[str, Any] = {}
    i = 0
    while i < len(extra):
        arg = extra[i]
        if not arg.startswith("--") or len(arg) < 3:
            raise RunnerError(
                f"unexpected argument {arg!r}; overrides look like --trainer.max_epochs=2"
            )
        key, sep, value = arg[2:].partition("=")
        if not sep:
            if i + 1 >= len(extra) or extra[i + 1].startswith("--"):
                raise RunnerError(f"override {arg!r} has no value; write {arg}=VALUE")
            value = extra[i + 1]
            i += 1
        overrides[key] = yaml.safe_load(value)
        i += 1
    return overrides


def prepare_config(
    recipe: Recipe, variant: Variant, run_dir: Path, overrides: dict[str, Any]
) -> dict[str, Any]:
    """The variant's config with CLI overrides and the run's output locations filled in."""
    config = variant.config
    for key, value in overrides.items():
        set_dotted(config, key, value)
    trainer = config.setdefault("trainer", {})
    trainer["default_root_dir"] = str(run_dir)
    set_dotted(config, "checkpoint.dirpath", str(run_dir / "checkpoints"))
    set_dotted(config, "run_summary.dirpath", str(run_dir))
    logger = trainer.get("logger", True)
    if logger is True:  # the default: seglit's W&B logger (offline without credentials)
        logger = {"class_path": LOGGER_CLASS, "init_args": {}}
    if isinstance(logger, dict) and logger.get("class_path") == LOGGER_CLASS:
        tags = [f"{k.rsplit('.', 1)[-1]}={label}" for k, label in variant.labels.items()]
        if variant.seed is not None:
            tags.append(f"seed={variant.seed}")
        run = {
            "name": variant.name,
            "group": recipe.name,
            "save_dir": str(run_dir),
            "tags": tags,
            "job_type": "train",
        }
        logger = deep_merge(logger, {"init_args": run})
    trainer["logger"] = logger  # another logger, or none, stays as the recipe wrote it
    return config


def _with_run_id(config: dict[str, Any], run_id: str | None) -> dict[str, Any]:
    logger = get_dotted(config, "trainer.logger")
    if isinstance(logger, dict) and logger.get("class_path") == LOGGER_CLASS:
        logger.setdefault("init_args", {})["id"] = run_id
    return config


def write_variant_config(config: dict[str, Any], run_dir: Path) -> Path:
    """Write ``config.yaml`` once; later runs must find the same config there.

    The W&B run id is generated on the first write and reused, so a resumed variant
    continues the same W&B run.

    Raises:
        RunnerError: If ``config.yaml`` exists with a different config (the recipe or the
            overrides changed): finished work is never overwritten.
    """
    path = run_dir / "config.yaml"
    if path.exists():
        existing = yaml.safe_load(path.read_text())
        run_id = get_dotted(existing, "trainer.logger.init_args.id")
        if _with_run_id(config, run_id) != existing:
            raise RunnerError(
                f"{path} holds a different config than this recipe now gives for the variant; "
                "use another --out, or delete that folder to start the variant over"
            )
        return path
    run_dir.mkdir(parents=True, exist_ok=True)
    _with_run_id(config, f"{run_dir.name[:40]}-{secrets.token_hex(4)}")
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(yaml.safe_dump(config, sort_keys=False))
    tmp.replace(path)
    return path


def run_variant(
    config_path: Path, run_dir: Path, verbose: bool = False, gpu: int | None = None
) -> int:
    """Run one variant with ``python -m seglit fit`` in its own process.

    Resumes from ``checkpoints/last.ckpt`` when present. Output goes to ``train.log``
    (and to the console with ``verbose``). ``gpu`` pins the process to one GPU through
    ``CUDA_VISIBLE_DEVICES``. Returns the process's exit code.
    """
    cmd = [sys.executable, "-m", "seglit", "fit", "--config", str(config_path)]
    last = run_dir / "checkpoints" / "last.ckpt"
    if last.is_file():
        cmd += ["--ckpt_path", str(last)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = str(gpu)
    with open(run_dir / "train.log", "a", buffering=1) as log:  # line-buffered: tail -f works
        device = f"CUDA_VISIBLE_DEVICES={gpu} " if gpu is not None else ""
        log.write(f"\n$ {device}{' '.join(cmd)}\n")
        log.flush()
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True
        )
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            if verbose:
                sys.stdout.write(line)
        return proc.wait()


def _mark_failed(run_dir: Path, returncode: int) -> None:
    tail = (run_dir / "train.log").read_text().splitlines()[-20:]
    (run_dir / "metrics.json").write_text(
        json.dumps({"status": "failed", "returncode": returncode, "log_tail": tail}, indent=2)
    )


def write_sweep(
    path: Path, args: argparse.Namespace, recipe: Recipe, variants: list[Variant], extra: list[str]
) -> None:
    """Write a W&B sweep config (method grid) whose agents run exactly these variants.

    The sweep has one parameter, ``variant``; each agent runs
    ``python -m seglit.fit RECIPE [--smoke] --out OUT [overrides] --variant=NAME``.
    """
    command = ["${env}", "${interpreter}", "-m", "seglit.fit", str(args.recipe)]
    if args.smoke:
        command.append("--smoke")
    command += ["--out", str(args.out), *extra, "${args}"]
    sweep = {
        "name": recipe.name,
        "method": "grid",
        "metric": {"name": "val/mIoU", "goal": "maximize"},
        "parameters": {"variant": {"values": [v.name for v in variants]}},
        "command": command,
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(sweep, sort_keys=False))


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m seglit.fit``."""
    parser = argparse.ArgumentParser(
        prog="python -m seglit.fit",
        description="Run every variant of an ablation recipe and summarise the results.",
        epilog="Any --dotted.key=value argument overrides that config key in every variant.",
    )
    parser.add_argument("recipe", type=Path, help="the recipe YAML file")
    parser.add_argument(
        "--smoke",
        action="store_true",
        help="apply the recipe's smoke block (synthetic data, tiny models, CPU)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="list and validate the variants without training"
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=None,
        metavar="NAME",
        help="run only this variant (repeatable)",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("runs"), help="output folder (default runs/)"
    )
    parser.add_argument("--verbose", action="store_true", help="stream each run's output")
    parser.add_argument(
        "--parallel",
        type=int,
        default=1,
        metavar="N",
        help="run N variants side by side, variant i on GPU i %% N "
        "(CUDA_VISIBLE_DEVICES); default 1",
    )
    parser.add_argument(
        "--export-sweep",
        type=Path,
        default=None,
        metavar="FILE",
        help="write a W&B sweep config (method grid) over the variants and exit",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status (0 when every selected variant finished)."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    try:
        return _main(args, extra)
    except (RecipeError, RunnerError) as err:
        print(f"seglit.fit: error: {err}", file=sys.stderr)
        return 2


def _main(args: argparse.Namespace, extra: list[str]) -> int:
    from seglit.cli import ConfigError, validate_config

    overrides = parse_overrides(extra)
    recipe = load_recipe(args.recipe, smoke=args.smoke)
    variants = recipe.variants()
    names = [v.name for v in variants]
    if args.variant:
        unknown = [n for n in args.variant if n not in names]
        if unknown:
            raise RunnerError(f"unknown variant(s) {unknown}; {args.recipe} has {names}")
    selected = [v for v in variants if not args.variant or v.name in args.variant]
    recipe_dir = args.out / recipe.name
    configs = {v.name: prepare_config(recipe, v, recipe_dir / v.name, overrides) for v in variants}

    for v in selected:
        try:
            validate_config(configs[v.name], source=f"{args.recipe} (variant {v.name})")
        except ConfigError as err:
            print(f"seglit.fit: error: {err}", file=sys.stderr)
            return 2

    if args.export_sweep is not None:
        write_sweep(args.export_sweep, args, recipe, selected, extra)
        print(f"wrote W&B sweep config over {len(selected)} variant(s) to {args.export_sweep}")
        print(f"  wandb sweep {args.export_sweep}   # then: wandb agent <sweep id>")
        return 0

    if args.dry_run:
        for v in selected:
            shown = ", ".join(f"{k}={_short(val)}" for k, val in v.overrides.items())
            seed = f" seed={v.seed}" if v.seed is not None else ""
            print(f"{v.name}:{seed} {shown}".rstrip())
        print(f"{len(selected)} variant(s) valid; outputs would go to {recipe_dir}/")
        return 0

    if args.parallel < 1:
        raise RunnerError(f"--parallel must be >= 1, got {args.parallel}")
    todo = []
    for i, v in enumerate(selected, 1):
        metrics = read_metrics(recipe_dir / v.name)
        if metrics and metrics.get("status") == "finished":
            print(f"[{i}/{len(selected)}] {v.name}: finished earlier, skipped")
        else:
            todo.append((i, v, write_variant_config(configs[v.name], recipe_dir / v.name)))

    def launch(item: tuple[int, Variant, Path], gpu: int | None) -> bool:
        i, v, config_path = item
        run_dir = recipe_dir / v.name
        prefix = f"[{i}/{len(selected)}] {v.name}"
        resumed = (run_dir / "checkpoints" / "last.ckpt").is_file()
        state = "resuming" if resumed else "running"
        print(f"{prefix}: {state} (log: {run_dir / 'train.log'})", flush=True)
        start = time.perf_counter()
        code = run_variant(config_path, run_dir, verbose=args.verbose, gpu=gpu)
        elapsed = time.perf_counter() - start
        metrics = read_metrics(run_dir)
        if code == 0 and metrics and metrics.get("status") == "finished":
            miou = (metrics.get("best") or {}).get("mIoU", float("nan"))
            print(f"{prefix}: done in {elapsed:.0f}s, val mIoU {miou:.4f}", flush=True)
            return True
        _mark_failed(run_dir, code)
        print(
            f"{prefix}: FAILED (exit {code}) after {elapsed:.0f}s; see {run_dir / 'train.log'}",
            flush=True,
        )
        return False

    if args.parallel == 1:
        results = [launch(item, None) for item in todo]
    else:
        slots: queue.Queue[int] = queue.Queue()
        for gpu in range(args.parallel):
            slots.put(gpu)

        def on_slot(item: tuple[int, Variant, Path]) -> bool:
            gpu = slots.get()
            try:
                return launch(item, gpu)
            finally:
                slots.put(gpu)

        with ThreadPoolExecutor(max_workers=args.parallel) as pool:
            results = list(pool.map(on_slot, todo))
    failures = results.count(False)

    rows = build_rows(recipe_dir, variants, recipe.baseline_group())
    table = write_summary(recipe_dir, recipe.name, rows)
    plots = write_plots(rows, recipe_dir)
    logger = get_dotted(configs[variants[0].name], "trainer.logger")
    if isinstance(logger, dict) and logger.get("class_path") == LOGGER_CLASS:
        init = logger.get("init_args", {})
        log_summary_run(
            recipe.name,
            rows,
            recipe_dir,
            project=init.get("project", "seglit"),
            mode=init.get("mode", "auto"),
            plots=plots,
            entity=init.get("entity"),
        )
    print(f"\n{recipe.name}: summary of {recipe_dir}/\n")
    print(table)
    print(
        f"\nwritten: {recipe_dir / 'summary.md'}, summary.csv, summary.json, "
        f"{', '.join(p.name for p in plots)}"
    )
    if find_offline_runs(recipe_dir):
        print(
            "W&B ran offline (no credentials or no network); the runs are on disk.\n"
            "Upload them with:\n"
            f"  wandb sync {recipe_dir}/*/wandb/offline-run-*"
        )
    return 1 if failures else 0


def _short(value: Any) -> str:
    if isinstance(value, dict) and "class_path" in value:
        return str(value["class_path"]).rsplit(".", 1)[-1]
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


if __name__ == "__main__":
    raise SystemExit(main())
