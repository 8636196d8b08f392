"""Run a recipe: check everything, train what is not finished, summarise.

:func:`run_recipe` is what ``python -m seglit.fit RECIPE`` does, step by step:

1. check that the output folder can be written (exit 3 otherwise);
2. load the recipe, prepare and resolve every variant's config and fingerprint it;
3. build what is cheap to build for the variants to run (net on the meta device,
   datamodule, optimizer on a dummy parameter, scheduler) and check their data exist
   (exit 2, naming the variant and the problem, before anything trains);
4. stop on folders that hold another config's result (exit 2, naming the keys that
   differ), unless ``--rerun-changed`` archives them;
5. train each variant not finished under its fingerprint, one process each, holding a lock
   on its folder (a second runner skips it), resuming from the newest readable checkpoint;
6. write ``summary.{md,csv,json}`` and the plots, update the recipe's W&B summary run, and
   print the table last.
"""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import yaml

from seglit.artifacts import (
    FAILED,
    FINISHED,
    LOCK_FILE,
    MISMATCH,
    PENDING,
    PROGRESS_FILE,
    WANDB_LOGGER_CLASS,
    failure_record,
    read_metrics,
    restore_metrics,
    run_status,
    write_metrics,
)
from seglit.recipe import Recipe, Variant, get_dotted, load_recipe
from seglit.runner.console import Console, progress_text, read_progress
from seglit.runner.launch import (
    Child,
    error_lines,
    keep_parent_fork_safe,
    log_tail,
    start_variant,
)
from seglit.runner.plan import (
    VariantPlan,
    archive,
    conflict_message,
    plan_variants,
    write_run_config,
)
from seglit.text import plural

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_OUTPUT, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class RunnerError(RuntimeError):
    """A problem found before training: the message names it; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = EXIT_CONFIG) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class RunnerOptions:
    """The command line of ``python -m seglit.fit`` (see :mod:`seglit.fit`)."""

    recipe: Path
    smoke: bool = False
    dry_run: bool = False
    variants: list[str] | None = None
    out: Path | None = None
    verbose: bool = False
    parallel: int = 1
    export_sweep: Path | None = None
    rerun_changed: bool = False
    progress_interval: float = 30.0
    fork: bool = False
    overrides: dict[str, Any] = field(default_factory=dict)
    extra: list[str] = field(default_factory=list)


def output_root(options: RunnerOptions) -> Path:
    """``--out``, or ``runs/`` (``runs/smoke/`` with ``--smoke``: never mixed with real runs)."""
    if options.out is not None:
        return options.out
    return Path("runs/smoke") if options.smoke else Path("runs")


def check_output_dir(out: Path) -> None:
    """Raise :class:`RunnerError` (exit 3) unless ``out`` is, or can be made, a writable folder."""
    if out.exists() and not out.is_dir():
        raise RunnerError(f"--out {out} is a file, not a folder", EXIT_OUTPUT)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as err:
        raise RunnerError(
            f"cannot write in the output folder {out} ({err.strerror or err}); "
            "choose another with --out",
            EXIT_OUTPUT,
        ) from None


def run_recipe(options: RunnerOptions, console: Console | None = None) -> int:
    """Run a recipe (see the module docstring); returns the exit status.

    0: every selected variant finished; 1: some failed; 2: a recipe, config, data or
    conflict problem found before training; 3: the output folder cannot be written;
    130: interrupted.
    """
    console = console or Console(interval_s=options.progress_interval)
    out = output_root(options)
    if not (options.dry_run or options.export_sweep):
        check_output_dir(out)
    recipe = load_recipe(options.recipe, smoke=options.smoke)
    variants = _requested_variants(recipe, options.variants or [], options.recipe)
    if options.fork:
        keep_parent_fork_safe()
    from seglit.cli import ConfigChecker, ConfigError  # torch, Lightning: only from here on

    checker = ConfigChecker()
    recipe_dir = out / recipe.name
    try:
        plans = plan_variants(recipe, variants, recipe_dir, options.overrides, checker.resolve)
        selected = [p for p in plans if not options.variants or p.name in options.variants]
        check_variants(selected, checker)
    except ConfigError as err:
        raise RunnerError(str(err)) from None
    if options.export_sweep is not None:
        write_sweep(options, recipe, selected)
        console.line(
            f"wrote W&B sweep config over {plural(len(selected), 'variant')} to "
            f"{options.export_sweep}"
        )
        console.line(f"  wandb sweep {options.export_sweep}   # then: wandb agent <sweep id>")
        return EXIT_OK
    if options.dry_run:
        for plan in selected:
            shown = ", ".join(f"{k}={_short(v)}" for k, v in plan.variant.overrides.items())
            seed = f" seed={plan.variant.seed}" if plan.variant.seed is not None else ""
            console.line(f"{plan.name}:{seed} {shown}".rstrip())
        console.line(f"{plural(len(selected), 'variant')} valid; outputs would go to {recipe_dir}/")
        return EXIT_OK
    resolve_conflicts(selected, options.rerun_changed, console)
    choose_wandb_mode(selected, console)
    failures = train(selected, options, console)
    return summarize(recipe, variants, plans, recipe_dir, console) or (
        EXIT_FAILED if failures else EXIT_OK
    )


def _requested_variants(recipe: Recipe, requested: list[str], path: str) -> list[Variant]:
    """The recipe's variants (those of ``ablation.only`` when it is set), plus any config
    outside ``only`` that ``--variant`` names explicitly.

    Raises:
        RunnerError: ``requested`` names a variant the recipe does not have.
    """
    variants = recipe.variants()
    kept = {v.name for v in variants} | set(requested)
    if len(kept) == len(variants):
        return variants
    every = recipe.variants(respect_only=False)
    names = [v.name for v in every]
    unknown = [n for n in requested if n not in names]
    if unknown:
        raise RunnerError(f"unknown variant(s) {unknown}; {path} has {names}")
    return [v for v in every if v.name in kept]


# ------------------------------------------------------------------------------ before training


def check_variants(plans: list[VariantPlan], checker: Any) -> None:
    """Build each variant cheaply and check its data (once per distinct data config).

    Raises:
        seglit.cli.ConfigError / RunnerError: naming the variant and the problem.
    """
    from seglit.data.base import DataError

    checked: set[str] = set()
    for plan in plans:
        if plan.status == FINISHED:
            continue
        source = f"variant {plan.name}"
        datamodule = checker.build(plan.config, source)
        key = json.dumps(plan.resolved.get("data"), sort_keys=True, default=str)
        if key in checked:
            continue
        checked.add(key)
        try:
            datamodule.check_data()
        except DataError as err:
            raise RunnerError(f"{source}: data: {err}") from None


def resolve_conflicts(plans: list[VariantPlan], rerun_changed: bool, console: Console) -> None:
    """Stop on folders holding another config's result, or archive them (``--rerun-changed``)."""
    conflicts = [p for p in plans if p.status == MISMATCH]
    if not conflicts:
        return
    if not rerun_changed:
        details = "\n".join(conflict_message(p) for p in conflicts)
        raise RunnerError(
            f"{plural(len(conflicts), 'variant folder')} "
            f"{'holds' if len(conflicts) == 1 else 'hold'} results of another configuration; "
            "nothing was trained:\n"
            f"{details}\n"
            "Use another --out for this configuration, or pass --rerun-changed to move the "
            "old results to _archive/ and train these variants again."
        )
    for plan in conflicts:
        target = archive(plan)
        plan.status = PENDING
        console.line(f"[{plan.index}] {plan.name}: another config's result moved to {target}")


def choose_wandb_mode(plans: list[VariantPlan], console: Console) -> None:
    """Probe W&B once; if it is unreachable, every run of this call goes offline at once.

    W&B online without a network would otherwise wait for its init timeout in every
    variant and in the summary run.
    """
    from seglit.tracking import resolve_mode

    modes = [
        get_dotted(p.config, "trainer.logger.init_args.mode", "auto")
        for p in plans
        if get_dotted(p.config, "trainer.logger.class_path") == WANDB_LOGGER_CLASS
    ]
    if not any(resolve_mode(m) == "online" for m in modes):
        return
    url = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        socket.create_connection((parsed.hostname or "api.wandb.ai", port), timeout=3).close()
    except OSError as err:
        os.environ["WANDB_MODE"] = "offline"
        console.line(
            f"W&B is unreachable ({url}: {err.strerror or err}); the runs of this call are "
            "kept offline (upload them later with the wandb sync command printed at the end)"
        )


def write_sweep(options: RunnerOptions, recipe: Recipe, plans: list[VariantPlan]) -> None:
    """Write a W&B sweep config (method grid) whose agents run exactly these variants."""
    command = ["${env}", "${interpreter}", "-m", "seglit.fit", str(options.recipe)]
    if options.smoke:
        command.append("--smoke")
    command += ["--out", str(output_root(options)), *options.extra, "${args}"]
    sweep = {
        "name": recipe.name,
        "method": "grid",
        "metric": {"name": "val/mIoU", "goal": "maximize"},
        "parameters": {"variant": {"values": [p.name for p in plans]}},
        "command": command,
    }
    path = Path(options.export_sweep)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(sweep, sort_keys=False))


# ---------------------------------------------------------------------------------- training


@dataclass
class _Launch:
    plan: VariantPlan
    child: Child
    lock: Any
    slot: int


def train(plans: list[VariantPlan], options: RunnerOptions, console: Console) -> int:
    """Train every plan that is not finished; returns the number of failures."""
    total = len(plans)
    for position, plan in enumerate(plans, 1):
        plan.index = position  # [i/n] counts the variants of this call
    queue: list[VariantPlan] = []
    for plan in plans:
        if plan.status == FINISHED:
            console.line(f"[{plan.index}/{total}] {plan.name}: finished earlier, skipped")
        else:
            queue.append(plan)
    parallel = max(1, options.parallel)
    threads = max(1, _cpu_count() // parallel) if parallel > 1 else None
    free = list(range(parallel))
    running: list[_Launch] = []
    failures = 0
    try:
        while queue or running:
            while queue and free:
                plan = queue.pop(0)
                launch = _start(plan, total, free[0], parallel, threads, console)
                if launch is None:
                    failures += plan.status == FAILED
                    continue
                free.pop(0)
                running.append(launch)
            for launch in list(running):
                if options.verbose:
                    _stream_log(launch.child, console)
                if launch.child.poll() is not None:
                    running.remove(launch)
                    free.append(launch.slot)
                    failures += not _finish(launch, total, console)
            if running:
                console.live("  |  ".join(_live(launch, total) for launch in running))
                time.sleep(0.2)
    except KeyboardInterrupt:
        for launch in running:
            launch.child.wait()
            launch.lock.release()
        console.line("interrupted: rerun the same command to resume where it stopped")
        raise
    return failures


def _start(
    plan: VariantPlan,
    total: int,
    slot: int,
    parallel: int,
    threads: int | None,
    console: Console,
) -> _Launch | None:
    """Lock the variant's folder, pick its checkpoint and start it (``None`` if not started)."""
    from filelock import FileLock, Timeout

    from seglit.checkpoints import resume_checkpoint

    prefix = f"[{plan.index}/{total}] {plan.name}"
    try:
        plan.run_dir.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(plan.run_dir / LOCK_FILE))
        try:
            lock.acquire(timeout=0)
        except Timeout:
            console.line(f"{prefix}: being trained by another process right now; skipped")
            return None
        for note in restore_metrics(plan.run_dir, plan.fingerprint.digest):
            console.line(f"{prefix}: {note}")
        plan.status = run_status(plan.run_dir, plan.fingerprint.digest)
        if plan.status == FINISHED:  # restored, or another runner finished it meanwhile
            lock.release()
            console.line(f"{prefix}: finished earlier, skipped")
            return None
        if plan.status == MISMATCH:  # another config's runner wrote here meanwhile
            lock.release()
            console.line(f"{prefix}: not started: {conflict_message(plan)}")
            return None
        ckpt, notes = resume_checkpoint(plan.run_dir)
        for note in notes:
            console.line(f"{prefix}: {note}")
        config_path = write_run_config(plan)
        argv = ["fit", "--config", str(config_path)]
        if ckpt is not None:
            argv += ["--ckpt_path", str(ckpt)]
        (plan.run_dir / PROGRESS_FILE).unlink(missing_ok=True)
        gpu = slot if parallel > 1 else None
        child = start_variant(plan.name, plan.run_dir, argv, plan.resolved, gpu, threads)
    except OSError as err:
        _record_failure(plan, 1, f"cannot write in {plan.run_dir}: {err}")
        console.line(f"{prefix}: FAILED before it started: {err}")
        plan.status = FAILED
        return None
    state = "resuming" if ckpt is not None else "running"
    console.line(f"{prefix}: {state} (log: {child.log_path})")
    return _Launch(plan, child, lock, slot)


def _finish(launch: _Launch, total: int, console: Console) -> bool:
    """Report a variant that ended; record a failure. Returns whether it finished."""
    plan, child = launch.plan, launch.child
    prefix = f"[{plan.index}/{total}] {plan.name}"
    elapsed = time.perf_counter() - child.started
    try:
        code = child.returncode
        status = run_status(plan.run_dir, plan.fingerprint.digest)
        if status == FINISHED:  # a result written in full is kept whatever the exit code
            metrics = read_metrics(plan.run_dir) or {}
            miou = (metrics.get("best") or {}).get("mIoU", float("nan"))
            after = f" (then exited {code} on shutdown; see {child.log_path})" if code else ""
            console.line(f"{prefix}: done in {elapsed:.1f}s, val mIoU {miou:.4f}{after}")
            return True
        errors = error_lines(child.log_path, child.log_start)
        _record_failure(plan, code if code else 1, " | ".join(errors))
        reason = f": {' | '.join(errors)}" if errors else ""
        console.line(
            f"{prefix}: FAILED (exit {code}) after {elapsed:.0f}s{reason}; see {child.log_path}"
        )
        return False
    finally:
        launch.lock.release()


def _record_failure(plan: VariantPlan, code: int, error: str) -> None:
    """Write the failed variant's ``metrics.json`` (best effort: the disk may be full)."""
    try:
        tail = log_tail(plan.run_dir / "train.log")
        write_metrics(plan.run_dir, failure_record(plan.fingerprint.digest, code, error, tail))
    except OSError:
        pass


def _live(launch: _Launch, total: int) -> str:
    plan, child = launch.plan, launch.child
    progress = read_progress(plan.run_dir / PROGRESS_FILE)
    elapsed = time.perf_counter() - child.started
    return f"[{plan.index}/{total}] {plan.name}: {progress_text(progress, elapsed)}"


def _stream_log(child: Child, console: Console) -> None:
    """Copy new lines of the child's ``train.log`` to the console (``--verbose``)."""
    try:
        with open(child.log_path, errors="replace") as log:
            log.seek(child.log_offset)
            text = log.read()
            child.log_offset = log.tell()
    except OSError:
        return
    for line in text.splitlines():
        console.line(line)


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


# ---------------------------------------------------------------------------------- summary


def summarize(
    recipe: Recipe,
    variants: list[Any],
    plans: list[VariantPlan],
    recipe_dir: Path,
    console: Console,
) -> int:
    """Write the summary files, plots and W&B summary run; print the table last.

    Returns:
        0, or :data:`EXIT_FAILED` when the summary could not be written.
    """
    from seglit.artifacts import write_summary
    from seglit.plots import write_plots
    from seglit.report import build_rows
    from seglit.wandb_offline import unsynced_runs

    fingerprints = {p.name: p.fingerprint.digest for p in plans}
    try:
        rows = build_rows(recipe_dir, variants, recipe.baseline_group(), fingerprints)
        table = write_summary(recipe_dir, recipe.name, rows)
        plots = write_plots(rows, recipe_dir)
    except OSError as err:
        console.line(f"seglit.fit: error: cannot write the summary in {recipe_dir}: {err}")
        return EXIT_FAILED
    dashboard = _log_summary_run(recipe, rows, recipe_dir, plans, plots)
    written = ["summary.csv", "summary.json", *(p.name for p in plots)]
    if dashboard is not None:
        written.append(f"{dashboard.name} (python -m seglit.dashboard --create uploads it)")
    console.line(f"\nwritten: {recipe_dir / 'summary.md'}, {', '.join(written)}")
    unsynced = unsynced_runs(recipe_dir)
    if unsynced:
        listing = recipe_dir / "wandb_unsynced.txt"
        listing.write_text("".join(f"{p}\n" for p in unsynced))
        console.line(
            f"W&B: {plural(len(unsynced), 'offline run')} not uploaded yet; upload them with:\n"
            f"  wandb sync $(cat {listing})"
        )
    console.line(f"\n{recipe.name}: summary of {recipe_dir}/\n")
    console.line(table)
    return EXIT_OK


def _log_summary_run(
    recipe: Recipe, rows: list[Any], recipe_dir: Path, plans: list[VariantPlan], plots: list
) -> Path | None:
    """Update the recipe's W&B summary run and write its workspace spec (W&B runs only).

    Returns:
        The workspace spec file, if one was written.
    """
    logger = get_dotted(plans[0].config, "trainer.logger") if plans else None
    if not (isinstance(logger, dict) and logger.get("class_path") == WANDB_LOGGER_CLASS):
        return None
    from seglit.dashboard import write_workspace_spec
    from seglit.wandb_summary import log_summary_run

    init = logger.get("init_args", {})
    project, entity = init.get("project", "seglit"), init.get("entity")
    os.environ.setdefault("WANDB_SILENT", "true")
    log_summary_run(
        recipe.name,
        rows,
        recipe_dir,
        project=project,
        mode=init.get("mode", "auto"),
        plots=plots,
        entity=entity,
    )
    if importlib.util.find_spec("wandb_workspaces") is None:  # the optional extra
        return None
    return write_workspace_spec(recipe, recipe_dir, project=project, entity=entity)


def _short(value: Any) -> str:
    if isinstance(value, dict) and "class_path" in value:
        return str(value["class_path"]).rsplit(".", 1)[-1]
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
