"""``--launcher slurm``: an ablation as one SLURM job array plus a summary job (submitit).

:func:`launch` takes the runner's plans (the same fingerprints decide what is finished) and:

1. skips finished variants, variants whose job recorded in ``_slurm/submitted.json`` is
   still queued or running (``squeue``), and variants a local runner is training now;
2. writes each remaining variant's ``config.yaml`` as a local run would (same W&B run id on
   a resubmission) and submits them as **one job array**, one task per variant;
3. submits a **summary job** that depends on the array (``afterany``) and writes the same
   ``summary.{md,csv,json}``, plots, W&B summary run and workspace as a local run;
4. records the job ids, prints them and where to look, and returns; with ``--wait`` it
   follows the jobs with the live lines of a local run.

Each array task (:class:`VariantTask`) does what the local runner does for one variant:
it locks the variant's folder, restores or skips a finished result, picks the newest
readable checkpoint and runs ``python -m seglit fit --config`` with ``train.log`` and
``progress.json`` in the variant's folder. Several GPUs or nodes per variant run as
``nodes x gpus_per_node`` SLURM tasks (``srun``), which Lightning's ``SLURMEnvironment``
turns into one DDP process group. On preemption or timeout submitit's signal handler calls
:meth:`VariantTask.checkpoint`, which stops the training process and requeues the task; the
requeued task resumes from the newest readable checkpoint.

Without ``sacct`` (no ``slurmdbd``) submitit cannot tell a job's state, so the launcher reads
``squeue`` and the variants' folders, not submitit's states.
"""

from __future__ import annotations

import getpass
import json
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seglit.io import atomic_write_text
from seglit.run_folder import (
    FAILED,
    FINISHED,
    PROGRESS_FILE,
    TRAIN_LOG,
    read_metrics,
    run_status,
)
from seglit.runner.console import Console, progress_text, read_progress
from seglit.runner.launcher_block import LauncherSettings
from seglit.runner.lock import try_lock
from seglit.runner.slurm_task import SummaryTask, VariantTask
from seglit.text import plural

SLURM_DIR = "_slurm"
"""Under the recipe's output folder: submitit's job files and ``submitted.json``."""
SUBMITTED_FILE = "submitted.json"
ACTIVE_STATES = ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED", "RESIZING",
                 "SUSPENDED", "REQUEUE_HOLD", "REQUEUE_FED", "SIGNALING", "STAGE_OUT")  # fmt: skip


# ------------------------------------------------------------------------- submission


def _squeue() -> dict[str, str]:
    """``{job id: state}`` of this user's jobs (array tasks one by one: ``123_4``)."""
    result = subprocess.run(
        ["squeue", "-h", "-r", "-u", getpass.getuser(), "-o", "%i|%T"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    if result.returncode:
        from seglit.runner.run import RunnerError

        lines = result.stderr.strip().splitlines() or [f"exit {result.returncode}"]
        raise RunnerError(f"squeue failed: {lines[-1]} (is SLURM reachable from here?)")
    states = {}
    for line in result.stdout.splitlines():
        job, _, state = line.strip().partition("|")
        if job:
            states[job] = state
    return states


def read_submitted(recipe_dir: Path) -> dict[str, Any]:
    """``_slurm/submitted.json``: each variant's last job (id, fingerprint) and the summary's."""
    path = recipe_dir / SLURM_DIR / SUBMITTED_FILE
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {"variants": {}, "summary": None}
    data.setdefault("variants", {})
    return data


def _write_submitted(recipe_dir: Path, data: dict[str, Any]) -> None:
    path = recipe_dir / SLURM_DIR / SUBMITTED_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(data, indent=2) + "\n")


def _executor(launcher: str, folder: Path, settings: LauncherSettings, name: str) -> Any:
    import submitit

    if launcher == "submitit-local":
        executor = submitit.LocalExecutor(folder=str(folder))
        executor.update_parameters(timeout_min=settings.time, tasks_per_node=1, nodes=1)
        return executor
    executor = submitit.SlurmExecutor(folder=str(folder), max_num_timeout=3)
    executor.update_parameters(**settings.executor_parameters(name))
    return executor


def sbatch_script(settings: LauncherSettings, folder: Path, name: str, count: int) -> str:
    """The sbatch script of an array of ``count`` variant tasks, as submitit writes it."""
    from submitit.slurm.slurm import _make_sbatch_string

    parameters = settings.executor_parameters(name)
    command = f"{sys.executable} -u -m submitit.core._submit {folder}/%j"
    return _make_sbatch_string(
        command=command, folder=f"{folder}/%j", map_count=count, **parameters
    )


@dataclass
class _Tracked:
    plan: Any
    job: Any
    job_id: str
    total: int
    started: float | None = None
    reported: bool = False

    @property
    def prefix(self) -> str:
        return f"[{self.plan.index}/{self.total}] {self.plan.name}"


def queued_job(
    entry: dict[str, Any] | None, digest: str, states: dict[str, str]
) -> tuple[str | None, str | None]:
    """``(job, stale)`` of a variant's recorded submission: ``job`` when it is queued or
    running for this config (``digest``), ``stale`` when it is queued or running for another
    one (a config changed since, its folder archived by ``--rerun-changed``): that job must
    be cancelled, never taken for this config's run.
    """
    job = (entry or {}).get("job")
    if not job or states.get(job) not in ACTIVE_STATES:
        return None, None
    if (entry or {}).get("fingerprint") != digest:
        return None, job
    return job, None


def launch(
    launcher: str,
    recipe: Any,
    variants: list[Any],
    plans: list[Any],
    selected: list[Any],
    recipe_dir: Path,
    settings: LauncherSettings,
    wait: bool,
    console: Console,
) -> int:
    """Submit the unfinished variants of ``selected`` and the summary job (module docstring).

    Returns:
        0 once submitted (without ``wait``); with ``wait``, 0 when every variant finished
        and 1 otherwise.

    Raises:
        seglit.runner.RunnerError: No ``sbatch`` here, or a submission failed.
    """
    from seglit.runner.plan import write_run_config
    from seglit.runner.run import RunnerError

    cluster = launcher == "slurm"
    if cluster and shutil.which("sbatch") is None:
        raise RunnerError(
            "--launcher slurm needs SLURM's sbatch and squeue on this machine (a cluster's "
            "login node); none found on PATH"
        )
    total = len(selected)
    for position, plan in enumerate(selected, 1):
        plan.index = position
    record = read_submitted(recipe_dir)
    states = _squeue() if cluster else {}
    to_submit, active = [], []
    for plan in selected:
        prefix = f"[{plan.index}/{total}] {plan.name}"
        job, stale = queued_job(record["variants"].get(plan.name), plan.fingerprint.digest, states)
        if stale:
            subprocess.run(["scancel", stale], check=False, capture_output=True)
            console.line(f"{prefix}: job {stale} was for another config; cancelled")
        if plan.status == FINISHED:
            console.line(f"{prefix}: finished earlier, skipped")
        elif job:
            console.line(f"{prefix}: {states[job].lower()} as job {job}; not submitted again")
            active.append(_Tracked(plan, None, job, total))
        else:
            lock = try_lock(plan.run_dir)
            if lock is None:
                console.line(f"{prefix}: being trained by another process right now; skipped")
                continue
            lock.release()
            to_submit.append(plan)
    if not to_submit and not active:
        finished = all(plan.status == FINISHED for plan in selected)
        console.line(
            "nothing to submit: "
            + ("every variant is finished" if finished else "the rest is being trained elsewhere")
        )
        from seglit.runner.run import summarize

        return summarize(recipe, variants, plans, recipe_dir, console)
    folder = (recipe_dir / SLURM_DIR).absolute()
    executor = _executor(launcher, folder / "%j", settings, recipe.name)
    tracked = list(active)
    if to_submit:
        for plan in to_submit:
            write_run_config(plan)
        tasks = [
            VariantTask(p.name, p.run_dir, p.fingerprint.digest, p.resolved) for p in to_submit
        ]
        try:
            with executor.batch():
                jobs = [executor.submit(task) for task in tasks]
        except Exception as err:  # submitit's FailedJobError / FailedSubmissionError
            raise RunnerError(f"sbatch refused the job array: {_one_line(err)}") from None
        for plan, job in zip(to_submit, jobs):
            tracked.append(_Tracked(plan, job, str(job.job_id), total))
            record["variants"][plan.name] = {
                "job": str(job.job_id),
                "fingerprint": plan.fingerprint.digest,
                "submitted": time.strftime("%Y-%m-%d %H:%M:%S"),
            }
    tracked.sort(key=lambda t: t.plan.index)
    summary_task = SummaryTask(recipe, variants, plans, recipe_dir)
    summary = None
    if cluster:
        executor.update_parameters(
            job_name=f"{recipe.name}-summary",
            nodes=1,
            ntasks_per_node=1,
            gpus_per_node=None,  # the summary needs no GPU
            array_parallelism=256,
            dependency="afterany:" + ":".join(t.job_id for t in tracked),
        )
        try:
            summary = executor.submit(summary_task)
        except Exception as err:
            raise RunnerError(f"sbatch refused the summary job: {_one_line(err)}") from None
        record["summary"] = str(summary.job_id)
    _write_submitted(recipe_dir, record)
    submitted = [t.job_id for t in tracked if t.job is not None]
    if len(submitted) > 1:
        array = submitted[0].split("_")[0]
        console.line(
            f"submitted {plural(len(submitted), 'variant')} as job array {array} "
            f"({', '.join(submitted)})"
        )
    elif submitted:  # submitit submits a single task as a plain job
        console.line(f"submitted 1 variant as job {submitted[0]}")
    if summary is not None:
        console.line(f"summary job {summary.job_id} runs after them (afterany)")
    console.line(f"  outputs: {recipe_dir}/<variant>/train.log; job logs: {folder}/")
    if cluster:
        every = ",".join(
            dict.fromkeys([t.job_id.split("_")[0] for t in tracked] + [str(summary.job_id)])
        )
        console.line(f"  follow:  squeue -j {every}   (or rerun with --wait)")
        console.line("  rerun the same command to resubmit what did not finish")
    if cluster and not wait:
        return 0
    ok = follow(tracked, console, cluster)
    if not cluster:  # the local executor has no dependencies: the summary runs after
        summary = executor.submit(summary_task)
    text = _summary_text(summary, cluster, console)
    if text:
        console.line(text.rstrip("\n"))
    return 0 if ok else 1


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return text if len(text) < 400 else text[:397] + "..."


def follow(tracked: list[_Tracked], console: Console, cluster: bool, poll: float = 1.0) -> bool:
    """Follow the variants' jobs with the local runner's lines; whether all finished."""
    from seglit.runner.launch import error_lines
    from seglit.runner.run import RunnerError

    while True:
        try:
            states = _squeue() if cluster else _local_states(tracked)
        except RunnerError as err:  # a busy controller: try again
            console.live(str(err))
            time.sleep(poll * 5)
            continue
        now = time.perf_counter()
        running = []
        for item in tracked:
            if item.reported:
                continue
            state = states.get(item.job_id)
            if state in ("RUNNING", "COMPLETING") and item.started is None:
                item.started = now
                console.line(
                    f"{item.prefix}: running as job {item.job_id} "
                    f"(log: {item.plan.run_dir / TRAIN_LOG})"
                )
            if state in ACTIVE_STATES:
                if state == "RUNNING":
                    running.append(item)
                continue
            item.reported = True
            status = run_status(item.plan.run_dir, item.plan.fingerprint.digest)
            took = f" in {now - item.started:.1f}s" if item.started is not None else ""
            if status == FINISHED:
                miou = read_metrics(item.plan.run_dir).best_miou
                console.line(f"{item.prefix}: done{took}, val mIoU {miou:.4f}")
            elif status == FAILED:
                errors = error_lines(item.plan.run_dir / TRAIN_LOG)
                reason = f": {' | '.join(errors)}" if errors else ""
                console.line(
                    f"{item.prefix}: FAILED (job {item.job_id}){reason}; see "
                    f"{item.plan.run_dir / TRAIN_LOG}"
                )
            else:
                console.line(
                    f"{item.prefix}: job {item.job_id} ended before the variant finished "
                    "(cancelled, preempted or killed); rerun the command to resubmit it "
                    "(it resumes from its newest checkpoint)"
                )
        if all(item.reported for item in tracked):
            break
        if running:
            console.live("  |  ".join(_live(item, now) for item in running))
        time.sleep(poll)
    return all(run_status(t.plan.run_dir, t.plan.fingerprint.digest) == FINISHED for t in tracked)


def _local_states(tracked: list[_Tracked]) -> dict[str, str]:
    states = {}
    for item in tracked:
        if item.job is not None and not item.job.done():
            states[item.job_id] = "RUNNING"
    return states


def _live(item: _Tracked, now: float) -> str:
    progress = read_progress(item.plan.run_dir / PROGRESS_FILE)
    return f"{item.prefix}: {progress_text(progress, now - (item.started or now))}"


def _summary_text(summary: Any, cluster: bool, console: Console) -> str | None:
    """Wait for the summary job; the text it printed (``None``, with a line, if it failed)."""
    if summary is None:
        return None
    while True:
        if summary.paths.result_pickle.exists():
            break
        if cluster and str(summary.job_id) not in _squeue():
            time.sleep(2)  # the result file may trail the job's end on a shared file system
            if not summary.paths.result_pickle.exists():
                console.line(f"summary job {summary.job_id} ended without a result; see "
                             f"{summary.paths.stdout}")  # fmt: skip
                return None
            break
        if not cluster and summary.done():
            break
        time.sleep(1)
    try:
        return summary.result()
    except Exception as err:
        console.line(f"summary job {summary.job_id} failed: {_one_line(err)}")
        return None


def dry_run_script(
    settings: LauncherSettings, recipe: Any, selected: list[Any], recipe_dir: Path
) -> str:
    """What ``--dry-run --launcher slurm`` prints: the array's sbatch script, then the
    summary job's dependency."""
    todo = [plan for plan in selected if plan.status != FINISHED]
    if not todo:
        return "every variant is finished: nothing would be submitted"
    folder = (recipe_dir / SLURM_DIR).absolute()
    tasks = ", ".join(f"{i}={plan.name}" for i, plan in enumerate(todo))
    script = sbatch_script(settings, folder, recipe.name, len(todo))
    return (
        f"\nsbatch script of the job array ({plural(len(todo), 'task')}: {tasks}):\n\n"
        f"{script}\n"
        f"then a summary job ({recipe.name}-summary, 1 task, no GPU) with "
        "--dependency=afterany:<array job id>"
    )
