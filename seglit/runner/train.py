"""Training the variants on this machine: one process per variant, ``--parallel`` slots.

:func:`train` is step 5 of :func:`seglit.runner.run.run_recipe`: it locks each unfinished
variant's folder (a second runner skips it), starts it from its newest readable checkpoint
(:mod:`seglit.runner.launch`), shows the live line, and records how each one ended.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from seglit.recipe import get_dotted
from seglit.run_folder import (
    FAILED,
    FINISHED,
    MISMATCH,
    PROGRESS_FILE,
    read_fingerprint,
    read_metrics,
    restore_metrics,
    run_status,
)
from seglit.runner.console import Console, progress_text, read_progress
from seglit.runner.launch import (
    Child,
    catch_stop_signals,
    error_lines,
    fit_argv,
    record_failure,
    start_variant,
    stop_children,
)
from seglit.runner.lock import try_lock
from seglit.runner.plan import (
    VariantPlan,
    busy_message,
    conflict_message,
    write_run_config,
)

if TYPE_CHECKING:
    from seglit.runner.run import RunnerOptions


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
    parallel, threads = slots_and_threads(options.parallel, [p.resolved for p in queue])
    spread_gpus = options.parallel is not None and parallel > 1  # --parallel N: slot i, GPU i
    if options.parallel is None and parallel > 1:
        console.line(
            f"training {parallel} variants at a time on {_cpu_count()} CPU cores, {threads} "
            f"thread(s) each (--parallel 1: one at a time with every core)"
        )
    free = list(range(parallel))
    running: list[_Launch] = []
    failures = 0
    stop_signals = catch_stop_signals().__enter__()  # SIGTERM / SIGHUP: stop like Ctrl-C
    try:
        while queue or running:
            while queue and free:
                plan = queue.pop(0)
                launch = _start(plan, total, free[0], spread_gpus, threads, options.fork, console)
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
    except KeyboardInterrupt as err:
        signum = getattr(err, "signum", signal.SIGINT)
        stop_children([launch.child for launch in running], signum)
        for launch in running:
            launch.lock.release()
        console.line(
            f"interrupted ({signal.Signals(signum).name}): rerun the same command to resume "
            "where it stopped"
        )
        raise
    finally:
        stop_signals.__exit__()
    return failures


def _start(
    plan: VariantPlan,
    total: int,
    slot: int,
    spread_gpus: bool,
    threads: int | None,
    fork: bool,
    console: Console,
) -> _Launch | None:
    """Lock the variant's folder, pick its checkpoint and start it (``None`` if not started)."""
    from seglit.checkpoints import resume_checkpoint

    prefix = f"[{plan.index}/{total}] {plan.name}"
    try:
        lock = try_lock(plan.run_dir)
        if lock is None:
            recorded = read_fingerprint(plan.run_dir)
            if recorded is not None and recorded.digest != plan.fingerprint.digest:
                console.line(f"{prefix}: not started: {busy_message(plan)}")
            else:
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
        argv = fit_argv(write_run_config(plan), ckpt)
        (plan.run_dir / PROGRESS_FILE).unlink(missing_ok=True)
        gpu = slot if spread_gpus else None
        child = start_variant(plan.name, plan.run_dir, argv, plan.resolved, gpu, threads, fork)
    except OSError as err:
        error = f"cannot write in {plan.run_dir}: {err}"
        record_failure(plan.run_dir, plan.fingerprint.digest, 1, error)
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
            metrics = read_metrics(plan.run_dir)
            miou = metrics.best_miou
            after = f" (then exited {code} on shutdown; see {child.log_path})" if code else ""
            console.line(f"{prefix}: done in {elapsed:.1f}s, val mIoU {miou:.4f}{after}")
            restored = metrics.restored
            if restored:
                console.line(
                    f"{prefix}: its metrics files were gone: the record was rebuilt from "
                    f"checkpoints/{restored['from_checkpoint']}, with "
                    f"{', '.join(restored['unknown'])} unknown (not re-measured)"
                )
            return True
        errors = error_lines(child.log_path, child.log_start)
        record_failure(plan.run_dir, plan.fingerprint.digest, code or 1, " | ".join(errors))
        reason = f": {' | '.join(errors)}" if errors else ""
        console.line(
            f"{prefix}: FAILED (exit {code}) after {elapsed:.0f}s{reason}; see {child.log_path}"
        )
        return False
    finally:
        launch.lock.release()


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


def slots_and_threads(
    requested: int | None, waiting: list[dict[str, Any]]
) -> tuple[int, int | None]:
    """How many variants train at once, and the torch threads of each (``None``: torch's own).

    ``--parallel N`` is taken as given, with ``cores // N`` threads each when ``N > 1``.
    Without it, two or more waiting variants that all train on the CPU
    (``trainer.accelerator: cpu``, as every smoke block sets) on two or more cores train two
    at a time with half the cores each: on 2 idle cores the shipped skip smoke takes 0.57x
    the wall time that way (``benchmarks/parallel_smoke.py``, docs/performance.md). Any
    other accelerator (``gpu``, ``auto``): one at a time (``--parallel N`` spreads over N
    GPUs). The choice reads the configs, not the machine: asking CUDA whether a GPU is there
    would initialise it in the runner, and variants forked from it could not use it.

    Args:
        requested: ``--parallel`` (``None`` when not given).
        waiting: the resolved configs of the variants left to train.
    """
    if requested is None:
        on_cpu = all(get_dotted(c, "trainer.accelerator") == "cpu" for c in waiting)
        requested = 2 if len(waiting) >= 2 and on_cpu and _cpu_count() >= 2 else 1
    parallel = max(1, requested)
    return parallel, (max(1, _cpu_count() // parallel) if parallel > 1 else None)


def _cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1
