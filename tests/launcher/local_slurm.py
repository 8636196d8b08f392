"""A single-node SLURM on localhost for the launcher tests (``slurm-wlm`` + ``munge``).

Everything it writes (config, state, spool, logs, munge socket) lives in one folder; the
daemons run as root except ``munged`` (as user ``munge``, as Debian runs it). Clients
(``sbatch``, ``squeue``, submitit) find the cluster through ``SLURM_CONF``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")


class SlurmUnavailable(RuntimeError):
    """Why a local SLURM cannot run here (the tests skip with this reason)."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LocalSlurm:
    """A running single-node SLURM: its folder, its config, its daemons' pids."""

    root: Path
    conf: Path
    node: str
    munge: Path
    pids: dict[str, int] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        """What a client needs in its environment."""
        return {"SLURM_CONF": str(self.conf)}

    def jobcomp(self) -> str:
        """The scheduler's log of finished jobs (``JobCompType=jobcomp/filetxt``)."""
        path = self.root / "jobcomp.txt"
        return path.read_text() if path.is_file() else ""

    def stop(self) -> None:
        """Cancel every job, then stop the daemons (slurmd, slurmctld, munged)."""
        if "slurmctld" in self.pids:
            env = {**os.environ, **self.env}
            subprocess.run(
                ["scancel", "--full", "-u", "root"], env=env, capture_output=True, timeout=30
            )
        for name in reversed(DAEMONS):
            pid = self.pids.pop(name, None)
            if pid is None:
                continue
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            for _ in range(100):
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.05)
            else:
                with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
                    os.kill(pid, signal.SIGKILL)
        shutil.rmtree(self.munge, ignore_errors=True)


def _daemon(name: str) -> str:
    """A daemon's executable (``/usr/sbin`` may be missing from a user's PATH)."""
    return shutil.which(name) or f"/usr/sbin/{name}"


def _read_pid(path: Path, timeout: float = 15.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            return int(path.read_text().strip())
        except (OSError, ValueError):
            time.sleep(0.1)
    raise SlurmUnavailable(f"{path.name} was not written within {timeout:.0f}s")


def start_local_slurm(root: Path, cpus: int = 2, timeout: float = 60.0) -> LocalSlurm:
    """Start munged, slurmctld and slurmd with everything under ``root``.

    Raises:
        SlurmUnavailable: The packages are missing, this is not root, or a daemon did not
            come up (the message says which, and where its log is).
    """
    missing = [
        d for d in DAEMONS if shutil.which(d) is None and not Path(f"/usr/sbin/{d}").exists()
    ]
    if missing:
        raise SlurmUnavailable(
            f"{', '.join(missing)} not installed (apt-get install slurm-wlm munge)"
        )
    if os.geteuid() != 0:
        raise SlurmUnavailable("a local SLURM needs root (slurmd starts jobs as their user)")
    import pwd

    try:
        munge_user = pwd.getpwnam("munge")
    except KeyError:
        raise SlurmUnavailable("no user 'munge' (the munge package creates it)") from None
    root = Path(root)
    # munged (user munge) must reach its folder: not under pytest's root-only temp folder
    munge = Path(
        tempfile.mkdtemp(prefix="seglit-munge-", dir="/tmp" if os.path.isdir("/tmp") else None)
    )
    os.chmod(munge, 0o700)
    key = munge / "munge.key"
    key.write_bytes(os.urandom(128))
    os.chmod(key, 0o600)
    for path in (munge, key):
        os.chown(path, munge_user.pw_uid, munge_user.pw_gid)
    for sub in ("state", "spool", "log"):
        (root / sub).mkdir(exist_ok=True)
    node = socket.gethostname().split(".")[0]
    conf = root / "slurm.conf"
    conf.write_text(
        "\n".join(
            [
                "ClusterName=seglit",
                f"SlurmctldHost={node}",
                "SlurmUser=root",
                "SlurmdUser=root",
                "AuthType=auth/munge",
                "CredType=cred/munge",
                f"AuthInfo=socket={munge / 'munge.socket'}",
                f"SlurmctldPort={_free_port()}",
                f"SlurmdPort={_free_port()}",
                f"StateSaveLocation={root / 'state'}",
                f"SlurmdSpoolDir={root / 'spool'}",
                f"SlurmctldPidFile={root / 'slurmctld.pid'}",
                f"SlurmdPidFile={root / 'slurmd.pid'}",
                f"SlurmctldLogFile={root / 'log' / 'slurmctld.log'}",
                f"SlurmdLogFile={root / 'log' / 'slurmd.log'}",
                "ProctrackType=proctrack/linuxproc",
                "TaskPlugin=task/none",
                "SelectType=select/cons_tres",
                "SelectTypeParameters=CR_CPU",
                "JobCompType=jobcomp/filetxt",
                f"JobCompLoc={root / 'jobcomp.txt'}",
                "MpiDefault=none",
                "ReturnToService=2",
                "SchedulerType=sched/backfill",
                "SchedulerParameters=sched_interval=1",
                "MessageTimeout=30",
                "KillWait=5",
                "MinJobAge=300",
                f"NodeName={node} CPUs={cpus} State=UNKNOWN",
                f"PartitionName=debug Nodes={node} Default=YES MaxTime=INFINITE State=UP",
                "",
            ]
        )
    )
    cluster = LocalSlurm(root, conf, node, munge)
    env = {**os.environ, **cluster.env}
    try:
        subprocess.run(
            [
                _daemon("munged"),
                f"--socket={munge / 'munge.socket'}",
                f"--key-file={key}",
                f"--pid-file={munge / 'munged.pid'}",
                f"--log-file={munge / 'munged.log'}",
                f"--seed-file={munge / 'munged.seed'}",
                "--force",
            ],
            check=True,
            capture_output=True,
            text=True,
            user="munge",
            timeout=30,
        )
        cluster.pids["munged"] = _read_pid(munge / "munged.pid")
        for daemon in ("slurmctld", "slurmd"):
            result = subprocess.run(
                [_daemon(daemon), "-f", str(conf)],
                env=env,
                capture_output=True,
                text=True,
                timeout=30,
            )
            if result.returncode:
                raise SlurmUnavailable(
                    f"{daemon} exited {result.returncode}: {result.stderr.strip()}"
                )
            cluster.pids[daemon] = _read_pid(root / f"{daemon}.pid")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = subprocess.run(
                ["sinfo", "-h", "-N", "-o", "%T"], env=env, capture_output=True, text=True
            ).stdout.strip()
            if state in ("idle", "mixed", "allocated"):
                return cluster
            time.sleep(0.5)
        raise SlurmUnavailable(
            f"the node did not become idle within {timeout:.0f}s (state {state!r}; "
            f"logs in {root / 'log'})"
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as err:
        cluster.stop()
        detail = getattr(err, "stderr", None) or err
        raise SlurmUnavailable(f"a local SLURM did not start: {str(detail).strip()}") from None
    except SlurmUnavailable:
        cluster.stop()
        raise
