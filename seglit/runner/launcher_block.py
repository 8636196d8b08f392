"""The ``launcher:`` block of a recipe (and ``--launcher.KEY=VALUE``): SLURM resources,
each key checked with an error that names it (:func:`launcher_settings`)."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from typing import Any

from seglit.recipe import RecipeError

LAUNCHERS = ("slurm", "submitit-local")
"""``slurm``: a SLURM cluster; ``submitit-local``: submitit's local executor (no cluster:
the same tasks as subprocesses of this command, for tests and debugging)."""


@dataclass
class LauncherSettings:
    """A recipe's ``launcher:`` block: the SLURM resources of each variant's task.

    Attributes:
        partition: ``--partition``.
        account: ``--account``.
        time: Time limit per task in minutes (the block takes minutes or ``[D-]HH:MM:SS``).
        gpus_per_node: GPUs per node; also ``trainer.devices`` (one SLURM task per GPU).
        nodes: Nodes per variant; also ``trainer.num_nodes``.
        cpus_per_task: ``--cpus-per-task`` (data loader workers + 1 is a good start).
        mem: Memory per node (``--mem``), e.g. ``64G``.
        extra: More ``#SBATCH`` lines, e.g. ``["--qos=high", "--constraint=a100"]``.
        array_parallelism: At most this many variants run at once (``--array=...%N``).
    """

    partition: str | None = None
    account: str | None = None
    time: int = 60
    gpus_per_node: int | None = None
    nodes: int = 1
    cpus_per_task: int | None = None
    mem: str | None = None
    extra: list[str] = field(default_factory=list)
    array_parallelism: int = 256

    @classmethod
    def from_block(cls, block: dict[str, Any] | None, source: str = "recipe") -> LauncherSettings:
        """Validate a ``launcher:`` block.

        Raises:
            RecipeError: naming ``launcher.<key>``, the value and what is expected.
        """
        block = dict(block or {})
        keys = list(cls.__dataclass_fields__)
        for key in block:
            if key not in keys:
                import difflib

                close = [k for k in keys if k.startswith(str(key))]
                close = close or difflib.get_close_matches(str(key), keys, n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise RecipeError(
                    f"{source}: unknown key launcher.{key}{hint}; expected one of {keys}"
                )
        settings = cls()
        for key in ("partition", "account"):
            value = block.get(key)
            if value is not None and not (isinstance(value, str) and value.strip()):
                raise RecipeError(f"{source}: launcher.{key}: {value!r}; expected a name")
            setattr(settings, key, value)
        if "time" in block:
            settings.time = _minutes(block["time"], source)
        for key, low in (("gpus_per_node", 0), ("nodes", 1), ("cpus_per_task", 1),
                         ("array_parallelism", 1)):  # fmt: skip
            if key not in block or (
                block[key] is None and key in ("gpus_per_node", "cpus_per_task")
            ):
                continue
            value = block[key]
            if not isinstance(value, int) or isinstance(value, bool) or value < low:
                raise RecipeError(f"{source}: launcher.{key}: {value!r}; expected an int >= {low}")
            setattr(settings, key, value)
        mem = block.get("mem")
        if mem is not None:
            if isinstance(mem, int) and not isinstance(mem, bool) and mem > 0:
                mem = f"{mem}G"
            if not (isinstance(mem, str) and re.fullmatch(r"\d+[KMGT]?B?", mem.strip().upper())):
                raise RecipeError(
                    f"{source}: launcher.mem: {block['mem']!r}; expected a size such as 64G "
                    "(or an int: gigabytes)"
                )
            settings.mem = mem.strip()
        extra = block.get("extra", [])
        if isinstance(extra, str):
            extra = [extra]
        if not isinstance(extra, list) or not all(isinstance(x, str) for x in extra):
            raise RecipeError(
                f"{source}: launcher.extra: {extra!r}; expected a list of sbatch options such "
                "as ['--qos=high']"
            )
        for line in extra:
            _sbatch_option(line, source)  # validates
        settings.extra = extra
        return settings

    @property
    def tasks_per_node(self) -> int:
        """SLURM tasks per node: one per GPU (Lightning's SLURM DDP), else one."""
        return max(1, self.gpus_per_node or 1)

    def trainer_overrides(self) -> dict[str, Any]:
        """The ``trainer`` keys the block decides (they enter the fingerprint, as they should:
        the DDP world size changes the result)."""
        overrides: dict[str, Any] = {}
        if self.gpus_per_node:
            overrides.update({"trainer.accelerator": "gpu", "trainer.devices": self.gpus_per_node})
        if self.gpus_per_node or self.nodes > 1:
            overrides["trainer.num_nodes"] = self.nodes
        return overrides

    def executor_parameters(self, job_name: str) -> dict[str, Any]:
        """``SlurmExecutor.update_parameters`` arguments of the array's tasks."""
        parameters: dict[str, Any] = {
            "job_name": job_name,
            "time": self.time,
            "nodes": self.nodes,
            "ntasks_per_node": self.tasks_per_node,
            "array_parallelism": self.array_parallelism,
            "stderr_to_stdout": True,
        }
        for key in ("partition", "account", "gpus_per_node", "cpus_per_task", "mem"):
            value = getattr(self, key)
            if value:
                parameters[key] = value
        extra = dict(_sbatch_option(line, "launcher") for line in self.extra)
        if extra:
            parameters["additional_parameters"] = extra
        return parameters


def _minutes(value: Any, source: str) -> int:
    """Minutes of a SLURM time: an int, ``MM``, ``HH:MM:SS``, ``D-HH:MM[:SS]``."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    match = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", str(value).strip())
    if isinstance(value, str) and match:
        days, first, second, third = (int(g) if g else 0 for g in match.groups())
        if match.group(4) is not None:  # HH:MM:SS
            minutes = first * 60 + second + (third > 0)
        elif match.group(3) is not None:  # D-HH:MM or MM:SS
            minutes = first * 60 + second if match.group(1) else first + (second > 0)
        else:
            minutes = first * 60 if match.group(1) else first
        minutes += days * 24 * 60
        if minutes > 0:
            return minutes
    raise RecipeError(
        f"{source}: launcher.time: {value!r}; expected minutes (an int > 0) or [D-]HH:MM:SS"
    )


def _sbatch_option(line: str, source: str) -> tuple[str, Any]:
    """One sbatch option as a submitit parameter: ``"--qos=high"`` -> ``("qos", "high")``,
    ``"#SBATCH --exclusive"`` -> ``("exclusive", True)``."""
    text = line.strip().removeprefix("#SBATCH").strip()
    match = re.fullmatch(r"--([A-Za-z][A-Za-z0-9_-]*)(?:[= ](.+))?", text)
    if match is None:
        raise RecipeError(
            f"{source}: launcher.extra: {line!r}; expected an sbatch option such as --qos=high"
        )
    key, value = match.group(1).replace("_", "-"), match.group(2)
    return key, True if value is None else value.strip()


def split_overrides(overrides: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Split ``--launcher.KEY=VALUE`` overrides (the launcher block's) from the config's."""
    config = {k: v for k, v in overrides.items() if not k.startswith("launcher.")}
    block = {k.removeprefix("launcher."): v for k, v in overrides.items() if k not in config}
    return config, block


def launcher_settings(
    recipe: Any, smoke: bool | str, overrides: dict[str, Any] | None = None
) -> LauncherSettings:
    """The recipe's launcher block with ``--launcher.KEY=VALUE`` overrides.

    With ``--smoke`` or ``--smoke NAME`` (``smoke`` is ``True`` or the name; CPU, one
    process) it drops the GPUs and nodes, so a smoke run's fingerprints are the local smoke
    run's, and unless ``cpus_per_task`` is given it asks for this machine's core count: a
    task then trains with the threads of a local smoke run, which on the same kind of
    machine prints the same digits (the thread count decides the rounding).
    """
    block = {**(recipe.launcher or {}), **(overrides or {})}
    settings = LauncherSettings.from_block(block, str(recipe.path))
    if smoke:
        settings.gpus_per_node, settings.nodes = None, 1
        if settings.cpus_per_task is None:
            settings.cpus_per_task = os.cpu_count() or 1
    return settings
