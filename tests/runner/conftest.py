"""Helpers of the runner tests: a tiny recipe and the runner as users start it."""

from __future__ import annotations

import hashlib
import multiprocessing
import subprocess
import uuid
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def write_recipe(write_tiny_recipe):
    """``write_recipe(folder, **top_level_keys) -> Path``: the tiny recipe, keys replaced."""

    def write(folder: Path, name: str = "recipe.yaml", **extra) -> Path:
        return write_tiny_recipe(Path(folder) / name, **extra)

    return write


# The runner in a child of a fork server that has imported seglit, torch and Lightning once
# (the server never runs torch work, so its children may fork variants safely): each call
# is what `python -m seglit.fit ARGS` does, without paying ~10 s of imports.
_CHILD = """
import os, resource, signal, sys
# Ctrl-C as in a terminal: a runner started in the background of a non-interactive shell
# (as CI may start pytest) inherits SIGINT ignored, and rightly keeps ignoring it
signal.signal(signal.SIGINT, signal.default_int_handler)
if {session!r}:
    os.setsid()  # its own process group: os.killpg(pid, ...) reaches its variants too
os.chdir({cwd!r})
os.environ.update({env!r})
if {limit!r}:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail (EFBIG)
    resource.setrlimit(resource.RLIMIT_FSIZE, ({limit!r}, {limit!r}))
for fd, path in ((1, {stdout!r}), (2, {stderr!r})):
    os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644), fd)
code = 1
try:
    from seglit.fit import main
    sys.argv = ["python -m seglit.fit", *{argv!r}]
    code = main({argv!r}, fork=True)
except SystemExit as exit_:
    code = exit_.code if isinstance(exit_.code, int) else 1
except BaseException:
    import traceback
    traceback.print_exc()
finally:
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
"""


@pytest.fixture(scope="session")
def _fork_server():
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["seglit.cli", "seglit.fit"])
    return context


@pytest.fixture(scope="session")
def start_fit(_fork_server, tmp_path_factory):
    """``start_fit(*args, cwd=..., env=None, limit_file_size=None, session=False)``: start
    what ``python -m seglit.fit ARGS`` does (variants forked from the runner); returns
    ``(process, stdout path, stderr path)``. With ``session`` the runner leads its own
    process group, so ``os.killpg(process.pid, ...)`` reaches its variants."""
    logs = tmp_path_factory.mktemp("runner_output")

    def start(*args: str, cwd: Path, env: dict | None = None,
              limit_file_size: int | None = None, session: bool = False):  # fmt: skip
        argv = [str(a) for a in args]
        stdout, stderr = logs / f"{uuid.uuid4().hex}.out", logs / f"{uuid.uuid4().hex}.err"
        code = _CHILD.format(
            cwd=str(cwd), env=dict(env or {}), limit=limit_file_size, argv=argv,
            stdout=str(stdout), stderr=str(stderr), session=session,
        )  # fmt: skip
        process = _fork_server.Process(target=exec, args=(code, {"__name__": "__main__"}))
        process.start()
        return process, stdout, stderr

    return start


@pytest.fixture(scope="session")
def run_fit(start_fit):
    """``run_fit(*args, cwd=..., env=None, limit_file_size=None)``: what
    ``python -m seglit.fit ARGS`` does, waited for; a ``CompletedProcess``."""

    def run(*args: str, cwd: Path, timeout: float = 400, **kwargs) -> subprocess.CompletedProcess:
        process, stdout, stderr = start_fit(*args, cwd=cwd, **kwargs)
        process.join(timeout)
        if process.exitcode is None:
            process.kill()
            process.join()
            raise TimeoutError(f"python -m seglit.fit {' '.join(map(str, args))} took {timeout}s+")
        return subprocess.CompletedProcess(
            [str(a) for a in args], process.exitcode, stdout.read_text(), stderr.read_text()
        )

    return run


def _tree_digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not (p.parent.name == "logs" and p.name.startswith("debug"))
    }


@pytest.fixture(scope="session")
def tree_digest():
    """``tree_digest(folder)``: SHA-256 of every file, except W&B's own service logs (its
    background process may append a shutdown line after the training process exited)."""
    return _tree_digest
