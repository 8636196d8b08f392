"""Starting a variant in its own process and waiting for it.

A single-device variant runs in a **forked** child of the runner: the runner has already
imported torch, Lightning and the seglit CLI (to validate the recipe), so the child starts
training at once instead of paying the ~10 s of imports a new Python process costs. Each
variant still gets its own process (its own memory, CUDA context and W&B run). A variant
that needs several processes (DDP over several devices, several nodes) runs as
``python -m seglit fit`` in a subprocess, because Lightning's launcher restarts the
command line of the process it runs in.

The child's output goes to the variant's ``train.log``; its progress to
``progress.json`` (:class:`seglit.callbacks.ProgressReporter`).

Forking is only safe from a process that never ran a multi-threaded torch op: GNU OpenMP's
thread pool does not survive a fork, and a child that uses it hangs. So only the command
line (``python -m seglit.fit``, which calls :func:`keep_parent_fork_safe` first) forks; a
runner called from Python (a notebook, a test) starts subprocesses.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from seglit.recipe import get_dotted
from seglit.run_folder import (
    PROGRESS_ENV,
    PROGRESS_FILE,
    TRAIN_LOG,
    failure_record,
    write_metrics,
)


@dataclass
class Child:
    """A running variant."""

    name: str
    run_dir: Path
    pid: int
    started: float
    popen: subprocess.Popen | None = None
    returncode: int | None = None
    log_start: int = 0
    """Size of ``train.log`` before this attempt: its own lines come after."""
    log_offset: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def log_path(self) -> Path:
        """The variant's ``train.log``."""
        return self.run_dir / TRAIN_LOG

    def poll(self) -> int | None:
        """The exit code once the process has ended, else ``None`` (never blocks)."""
        if self.returncode is not None:
            return self.returncode
        if self.popen is not None:
            self.returncode = self.popen.poll()
            return self.returncode
        pid, status = os.waitpid(self.pid, os.WNOHANG)
        if pid == 0:
            return None
        self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self) -> int:
        """Block until the process ends; its exit code."""
        while (code := self.poll()) is None:
            time.sleep(0.05)
        return code


PR_SET_PDEATHSIG = 1
"""Linux ``prctl`` option: the signal a process receives when its parent dies."""


def stop_with_parent(parent: int) -> None:
    """Make this process (a variant) receive SIGTERM when ``parent`` (its runner) dies.

    Linux delivers the parent-death signal (``prctl(PR_SET_PDEATHSIG)``); elsewhere, or if
    that is unavailable, :func:`watch_parent` does it. A runner that died before this call
    is caught by the ``getppid`` check. A variant stopped this way ends, which releases its
    folder's lock, and the next run of the recipe resumes it from its last checkpoint.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)


def watch_parent(parent: int, interval_s: float = 1.0) -> threading.Thread:
    """A daemon thread that sends this process SIGTERM once ``parent`` is gone."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(interval_s)
        os.kill(os.getpid(), signal.SIGTERM)

    thread = threading.Thread(target=watch, name="seglit-parent-watchdog", daemon=True)
    thread.start()
    return thread


def single_process(resolved: dict[str, Any]) -> bool:
    """Whether the variant's Trainer runs in one process (one device, one node)."""
    devices = get_dotted(resolved, "trainer.devices", "auto")
    accelerator = str(get_dotted(resolved, "trainer.accelerator", "auto"))
    nodes = get_dotted(resolved, "trainer.num_nodes", 1) or 1
    if nodes != 1:
        return False
    if isinstance(devices, (list, tuple)):
        return len(devices) == 1
    if str(devices) == "1":
        return True
    return str(devices) == "auto" and accelerator == "cpu"


_parent_threads: int | None = None
"""torch's thread count before :func:`keep_parent_fork_safe`; restored in forked children."""


def keep_parent_fork_safe() -> None:
    """Make this process a safe parent for forked variants (call before any torch work).

    torch runs on one thread here from now on, so no OpenMP pool exists to be lost in a
    fork; the children get the original thread count back.
    """
    global _parent_threads
    import torch

    if _parent_threads is None:
        _parent_threads = torch.get_num_threads()
        torch.set_num_threads(1)


def can_fork(resolved: dict[str, Any], fork: bool) -> bool:
    """Whether the variant can run in a forked child of this process.

    Needs forking asked for by this run (``fork``: its runner is the command line),
    ``os.fork``, :func:`keep_parent_fork_safe` called, a single-process Trainer, and no CUDA
    initialised in this process (a CUDA context does not survive a fork). Asked per run: a
    process that once ran the command line in-process (a test, a notebook) and then ran
    torch work must not fork for a later run.
    """
    if not fork or _parent_threads is None or not hasattr(os, "fork"):
        return False
    if not single_process(resolved):
        return False
    import torch

    return not torch.cuda.is_initialized()


def start_variant(
    name: str,
    run_dir: Path,
    argv: list[str],
    resolved: dict[str, Any],
    gpu: int | None = None,
    threads: int | None = None,
    fork: bool = False,
) -> Child:
    """Start ``seglit <argv>`` for one variant; its output is appended to ``train.log``.

    Args:
        name: The variant's name.
        run_dir: Its folder.
        argv: The ``seglit`` arguments, e.g. ``["fit", "--config", ".../config.yaml"]``.
        resolved: Its resolved config (decides fork or subprocess).
        gpu: Pin it to this GPU (``CUDA_VISIBLE_DEVICES``).
        threads: CPU threads for torch (when variants share the CPU).
        fork: Fork it from this process where :func:`can_fork` allows (the command line
            runner); else a ``python -m seglit`` subprocess.
    """
    env = {PROGRESS_ENV: str(run_dir / PROGRESS_FILE), "PYTHONUNBUFFERED": "1"}
    if gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = str(gpu)
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    log_path = run_dir / TRAIN_LOG
    prefix = " ".join(f"{k}={v}" for k, v in env.items() if k in ("CUDA_VISIBLE_DEVICES",))
    fork = can_fork(resolved, fork)
    command = ["seglit", *argv] if fork else [sys.executable, "-m", "seglit", *argv]  # as logged
    with open(log_path, "a") as log:
        log_start = log.tell()
        log.write(f"\n$ {prefix + ' ' if prefix else ''}{' '.join(command)}\n")
    start = time.perf_counter()
    if fork:
        pid = _fork_cli(argv, log_path, env, threads)
        return Child(name, run_dir, pid, start, log_start=log_start, log_offset=log_start)
    runner = os.getpid()
    with open(log_path, "a") as log:
        popen = subprocess.Popen(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
            preexec_fn=lambda: stop_with_parent(runner),
        )
    return Child(name, run_dir, popen.pid, start, popen, log_start=log_start, log_offset=log_start)


def _fork_cli(argv: list[str], log_path: Path, env: dict[str, str], threads: int | None) -> int:
    """Fork; the child runs the seglit CLI with its output in ``log_path`` and exits."""
    sys.stdout.flush()
    sys.stderr.flush()
    runner = os.getpid()
    pid = os.fork()
    if pid:
        return pid
    code = 1
    try:
        for signum in (signal.SIGTERM, signal.SIGHUP):  # not the runner's handlers
            signal.signal(signum, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        stop_with_parent(runner)
        watch_parent(runner)
        fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        # Python's own streams onto the log too, should the parent have replaced them (a
        # capture): a traceback of this child must reach train.log
        sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
        sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
        os.environ.update(env)
        sys.argv = ["seglit", *argv]  # what Lightning sees as this process's command line
        import torch

        torch.set_num_threads(threads or _parent_threads or torch.get_num_threads())
        from seglit.cli import main

        main()  # reads sys.argv, as `seglit ...` would
        code = 0
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    except BaseException:
        traceback.print_exc()
        code = 1
    finally:
        try:
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os._exit(code)


def error_lines(log_path: Path, start: int = 0, limit: int = 2) -> list[str]:
    """The last error lines a failed attempt printed (an exception or a ``seglit: error``).

    Args:
        log_path: The variant's ``train.log``.
        start: Where this attempt's output begins in the file.
        limit: At most this many lines.
    """
    try:
        with open(log_path, errors="replace") as log:
            log.seek(start)
            lines = log.read().splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        text = line.strip()
        is_exception = ":" in text and text.split(":", 1)[0].split(".")[-1].endswith(
            ("Error", "Exception", "Interrupt", "Exit")
        )
        if text.startswith("seglit: error:") or is_exception:
            found.append(text.removeprefix("seglit: error: "))
    full = [text for text in found if any(mark in text for mark in _FULL_DISK)]
    if full:  # one clear line: what follows a failed write is only torch's own wreckage
        return [f"cannot write the run's files (the disk is full or a size limit hit): {full[-1]}"]
    return found[-limit:]


_FULL_DISK = ("[Errno 28]", "[Errno 27]", "[Errno 122]", "No space left on device")
"""Signs of a write that failed for lack of room (ENOSPC, EFBIG, EDQUOT)."""


def log_tail(log_path: Path, lines: int = 20) -> list[str]:
    """The last lines of a log."""
    try:
        return log_path.read_text(errors="replace").splitlines()[-lines:]
    except OSError:
        return []


class Stopped(KeyboardInterrupt):
    """The runner received SIGTERM or SIGHUP (a scheduler's stop, a closed terminal).

    A :class:`KeyboardInterrupt`, so every ``except KeyboardInterrupt`` of the runner stops
    the same way as on Ctrl-C.

    Attributes:
        signum: The signal received.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


class catch_stop_signals:
    """``with catch_stop_signals():`` turns SIGTERM and SIGHUP into :class:`Stopped`.

    Only in the main thread (elsewhere Python cannot set handlers, and nothing changes).
    The previous handlers come back on exit.
    """

    SIGNALS = (signal.SIGTERM, signal.SIGHUP)

    def __enter__(self) -> catch_stop_signals:
        self._previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._raise)
        return self

    @staticmethod
    def _raise(signum: int, frame: Any) -> None:
        raise Stopped(signum)

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def fit_argv(config: Path, ckpt: Path | None) -> list[str]:
    """The ``seglit fit`` arguments of a variant: its config, and its checkpoint to resume."""
    return ["fit", "--config", str(config)] + (["--ckpt_path", str(ckpt)] if ckpt else [])


def record_failure(run_dir: Path, digest: str, code: int, error: str) -> None:
    """Write a failed variant's ``metrics.json``: exit code, error, the tail of its
    ``train.log`` (best effort: the disk may be full)."""
    try:
        tail = log_tail(run_dir / TRAIN_LOG)
        write_metrics(run_dir, failure_record(digest, code, error, tail))
    except OSError:
        pass


def stop_children(children: list[Child], signum: int, grace_s: float = 120.0) -> None:
    """Forward a stop to running variants and wait until each has ended.

    SIGTERM and SIGHUP are forwarded as SIGTERM (Lightning stops after the current batch);
    SIGINT as SIGINT, but only to a child still running after 2 s: Ctrl-C in a terminal
    reaches the variants by itself, and Lightning ignores a second one while it shuts down.
    A child still running ``grace_s`` seconds later is killed.
    """
    if signum == signal.SIGINT:
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline and any(c.poll() is None for c in children):
            time.sleep(0.05)
    forwarded = signal.SIGINT if signum == signal.SIGINT else signal.SIGTERM
    for child in children:
        if child.poll() is None:
            _send(child, forwarded)
    deadline = time.monotonic() + grace_s
    for child in children:
        while child.poll() is None:
            if time.monotonic() > deadline:
                _send(child, signal.SIGKILL)
                child.wait()
                break
            time.sleep(0.05)


def _send(child: Child, signum: int) -> None:
    try:
        os.kill(child.pid, signum)
    except ProcessLookupError:
        pass
