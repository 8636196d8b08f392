"""What one SLURM array task runs (:class:`VariantTask`: one variant, as the local runner
runs it, requeued on preemption) and the summary job (:class:`SummaryTask`)."""

from __future__ import annotations

import io
import os
import signal
import time
from pathlib import Path
from typing import Any

from seglit.run_folder import (
    CONFIG_FILE,
    FAILED,
    FINISHED,
    MISMATCH,
    PROGRESS_FILE,
    TRAIN_LOG,
    read_metrics,
    restore_metrics,
    run_status,
)
from seglit.runner.console import Console


class VariantTask:
    """One array task: train one variant as the local runner does (pickled by submitit).

    Args:
        name: The variant's name.
        run_dir: Its folder (its ``config.yaml`` was written at submission).
        digest: Its fingerprint.
        resolved: Its resolved config.
    """

    def __init__(self, name: str, run_dir: Path, digest: str, resolved: dict[str, Any]) -> None:
        self.name = name
        self.run_dir = Path(run_dir).absolute()
        self.digest = digest
        self.resolved = resolved
        self._child: Any = None
        self._lock: Any = None

    def __call__(self) -> str:
        """Train the variant; returns its status (``finished``, ``failed``, ``skipped``)."""
        from seglit.checkpoints import resume_checkpoint
        from seglit.runner.launch import fit_argv
        from seglit.runner.lock import try_lock

        rank = int(os.environ.get("SLURM_PROCID", "0"))
        if rank == 0:
            self._lock = try_lock(self.run_dir)
            if self._lock is None:
                print(f"{self.name}: being trained by another process right now; skipped")
                return "skipped"
            for note in restore_metrics(self.run_dir, self.digest):
                print(f"{self.name}: {note}")
            status = run_status(self.run_dir, self.digest)
            if status in (FINISHED, MISMATCH):
                print(f"{self.name}: {status} already; nothing to do")
                self._lock.release()
                return status
            (self.run_dir / PROGRESS_FILE).unlink(missing_ok=True)
        ckpt, notes = resume_checkpoint(self.run_dir) if rank == 0 else (None, [])
        if rank:
            ckpt = _newest_checkpoint(self.run_dir)  # rank 0 has set unreadable ones aside
        for note in notes:
            print(f"{self.name}: {note}")
        argv = fit_argv(self.run_dir / CONFIG_FILE, ckpt)
        print(f"{self.name}: {'resuming from ' + str(ckpt) if ckpt else 'running'}", flush=True)
        try:
            code = self._run(argv)
            if rank:
                return FINISHED if code == 0 else FAILED
            return self._finish(code)
        finally:
            if self._lock is not None:
                self._lock.release()

    def _run(self, argv: list[str]) -> int:
        from seglit.runner.launch import start_variant

        # The training process ignores submitit's preemption signal (SIGUSR2): this process
        # handles it (checkpoint() stops the training and requeues the task).
        previous = signal.signal(signal.SIGUSR2, signal.SIG_IGN)
        try:
            self._child = start_variant(
                self.name, self.run_dir, argv, self.resolved, threads=task_threads()
            )
        finally:
            signal.signal(signal.SIGUSR2, previous)
        while (code := self._child.poll()) is None:
            time.sleep(0.5)
        return code

    def _finish(self, code: int) -> str:
        from seglit.runner.launch import error_lines, record_failure

        if run_status(self.run_dir, self.digest) == FINISHED:
            miou = read_metrics(self.run_dir).best_miou
            print(f"{self.name}: done, val mIoU {miou}")
            return FINISHED
        errors = error_lines(self.run_dir / TRAIN_LOG, self._child.log_start)
        record_failure(self.run_dir, self.digest, code or 1, " | ".join(errors))
        print(f"{self.name}: FAILED (exit {code}): {' | '.join(errors)}")
        return FAILED

    def checkpoint(self, *args: Any, **kwargs: Any) -> Any:
        """submitit's hook on preemption or timeout: stop the training, requeue this task.

        The requeued task resumes from the newest readable checkpoint (``last.ckpt`` is
        written after every epoch), as a local rerun does.
        """
        import submitit

        child = self._child
        if child is not None and child.poll() is None:
            os.kill(child.pid, signal.SIGTERM)
            deadline = time.monotonic() + 30
            while child.poll() is None and time.monotonic() < deadline:
                time.sleep(0.2)
            if child.poll() is None:
                os.kill(child.pid, signal.SIGKILL)
                child.wait()
        if self._lock is not None:
            self._lock.release()
        print(f"{self.name}: preempted or timed out; requeued to resume", flush=True)
        fresh = VariantTask(self.name, self.run_dir, self.digest, self.resolved)
        return submitit.helpers.DelayedSubmission(fresh)


def task_threads() -> int | None:
    """torch's CPU threads in a task: the CPUs SLURM gave it (``--cpus-per-task``), else
    ``OMP_NUM_THREADS`` as exported at submission, else the job's CPUs on this node shared
    by its tasks there. A node without CPU binding (``TaskPlugin=task/none``) shows every
    core to every task; threads beyond the task's share make tiny ops many times slower.
    ``None`` outside SLURM (submitit's local executor): torch's default."""
    if os.environ.get("SLURM_CPUS_PER_TASK"):
        return int(os.environ["SLURM_CPUS_PER_TASK"])
    if os.environ.get("OMP_NUM_THREADS"):
        return int(os.environ["OMP_NUM_THREADS"])
    cpus = os.environ.get("SLURM_CPUS_ON_NODE")
    if not cpus:
        return None
    tasks = int(os.environ.get("SLURM_NTASKS_PER_NODE") or 1)
    return max(1, int(cpus) // tasks)


def _newest_checkpoint(run_dir: Path) -> Path | None:
    """Rank 0's choice, without reading the files again (rank 0 has checked them)."""
    from seglit.run_folder import RESUME, choose_checkpoint

    return choose_checkpoint(run_dir, RESUME, readable=lambda _: True)[0]


class SummaryTask:
    """The summary job: the local runner's summary step; returns what it printed."""

    def __init__(self, recipe: Any, variants: list[Any], plans: list[Any], recipe_dir: Path):
        self.recipe = recipe
        self.variants = variants
        self.plans = plans
        self.recipe_dir = Path(recipe_dir).absolute()

    def __call__(self) -> str:
        """Write summary, plots, W&B summary run and workspace; returns the printed text."""
        from seglit.runner.run import summarize

        text = io.StringIO()
        summarize(self.recipe, self.variants, self.plans, self.recipe_dir, Console(text))
        print(text.getvalue(), flush=True)
        return text.getvalue()
