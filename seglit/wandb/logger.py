"""Weights & Biases tracking that never breaks training.

:class:`WandbLogger` is Lightning's ``WandbLogger`` with four additions:

* ``mode="auto"`` (the default) runs online when W&B credentials are configured and
  offline otherwise, so a run without an account or network keeps its data on disk;
* W&B gets ``init_timeout`` seconds to start online (instead of its 90 s), then the run
  continues offline;
* a failure of W&B itself (at start or mid-run) turns into a warning and an offline or
  disabled run; training goes on;
* at the end of an offline run it prints the ``wandb sync`` command that uploads it.

Listing offline runs, and those not uploaded yet, is :mod:`seglit.wandb.offline`'s job.
"""

from __future__ import annotations

import netrc
import os
import warnings
from pathlib import Path
from typing import Any, Literal

from lightning.pytorch.loggers import WandbLogger as _LightningWandbLogger
from lightning.pytorch.utilities import rank_zero_only

Mode = Literal["auto", "online", "offline", "disabled"]


def has_wandb_credentials() -> bool:
    """Whether an API key is available (``WANDB_API_KEY`` or a netrc entry for W&B)."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        entries = netrc.netrc(os.environ.get("NETRC")).hosts
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False
    return any("wandb" in host for host in entries)


def resolve_mode(mode: Mode) -> str:
    """Turn ``"auto"`` into ``"online"`` or ``"offline"``; ``WANDB_MODE`` wins if set.

    ``WANDB_MODE=offline`` (or ``disabled``) also wins over an explicit ``"online"``: the
    recipe runner sets it once for all runs when W&B is unreachable.
    """
    env = os.environ.get("WANDB_MODE")
    env = "offline" if env == "dryrun" else env
    if mode == "auto":
        if env in ("online", "offline", "disabled"):
            return env
        return "online" if has_wandb_credentials() else "offline"
    if mode == "online" and env in ("offline", "disabled"):
        return env
    return mode


class WandbLogger(_LightningWandbLogger):
    """Lightning's ``WandbLogger`` that falls back to offline and never fails training.

    Args:
        project: W&B project.
        name: Run name (the variant's name in a recipe).
        group: Run group (the recipe's name).
        job_type: W&B job type, e.g. ``"train"`` or ``"summary"``.
        tags: Run tags (one per ablation axis value in a recipe).
        save_dir: Directory that receives the ``wandb/`` folder.
        id: Run id; reusing it resumes the same W&B run after an interruption.
        mode: ``"auto"`` (online with credentials, offline without), ``"online"``,
            ``"offline"`` or ``"disabled"``.
        entity: W&B entity (user or team).
        log_model: Upload checkpoints as artifacts (online only).
        notes: Free-text notes.
        init_timeout: Seconds W&B may take to start online before the run goes offline.
        announce_offline: At the end of an offline run, print the ``wandb sync`` command.
        run_config: Extra W&B config values (the recipe runner records the recipe, the
            variant, its config group, seed and fingerprint here, for grouping runs).
    """

    def __init__(
        self,
        project: str = "seglit",
        name: str | None = None,
        group: str | None = None,
        job_type: str = "train",
        tags: list[str] | None = None,
        save_dir: str = ".",
        id: str | None = None,
        mode: Mode = "auto",
        entity: str | None = None,
        log_model: bool = False,
        notes: str | None = None,
        init_timeout: float = 15.0,
        announce_offline: bool = True,
        run_config: dict[str, Any] | None = None,
    ) -> None:
        self.mode = resolve_mode(mode)
        Path(save_dir).mkdir(parents=True, exist_ok=True)
        super().__init__(
            name=name,
            save_dir=save_dir,
            id=id,
            project=project,
            log_model=log_model and self.mode == "online",
            group=group,
            job_type=job_type,
            tags=list(tags) if tags else None,
            entity=entity,
            notes=notes,
            mode=self.mode,
            settings={"init_timeout": float(init_timeout)},
            config=dict(run_config or {}),
        )
        self._wandb_init.pop("anonymous", None)  # deprecated in wandb; Lightning always sets it
        self._broken = False
        self._finished = False
        self.announce_offline = announce_offline
        self.eval_step: int | None = None
        """The step Lightning charted the last validation or test scalars at; the W&B
        media of that evaluation go to the same step (:class:`seglit.wandb.media.WandbMedia`)."""

    @property
    def active(self) -> bool:
        """Whether the logger still sends anything to W&B (not disabled, not broken)."""
        return self.mode != "disabled" and not self._broken

    # Lightning's WandbLogger keeps the wandb.init arguments in `_wandb_init` and the run in
    # `_experiment`, and offers no public way to retry the start in another mode. Falling
    # back to offline needs both, so this class uses those two private attributes (and only
    # in `__init__`, `experiment` and `finalize`); tests/test_tracking.py pins the Lightning
    # version and fails loudly if their meaning changes.
    @property
    def experiment(self):  # noqa: D102
        if self._experiment is not None:
            return self._experiment
        try:
            return super().experiment
        except Exception as err:  # W&B unreachable, bad credentials, ...
            fallback = "offline" if self.mode == "online" else "disabled"
            warnings.warn(
                f"W&B could not start in {self.mode} mode ({err}); continuing {fallback}.",
                stacklevel=2,
            )
            self.mode = fallback
            self._wandb_init["mode"] = fallback
            self._experiment = None
            try:
                return super().experiment
            except Exception:
                self.mode = self._wandb_init["mode"] = "disabled"
                return super().experiment

    def _guard(self, method: str, *args: Any, **kwargs: Any) -> None:
        if self._broken:
            return
        try:
            getattr(super(), method)(*args, **kwargs)
        except Exception as err:
            self._broken = True
            warnings.warn(
                f"W&B failed while logging ({err}); training continues without W&B.", stacklevel=3
            )

    @rank_zero_only
    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:  # noqa: D102
        if step is not None and any(key.startswith(("val/", "test/")) for key in metrics):
            # during fit Lightning charts a validation at the last training step's index,
            # one below trainer.global_step
            self.eval_step = step
        self._guard("log_metrics", metrics, step)

    @rank_zero_only
    def log_hyperparams(self, params: Any) -> None:  # noqa: D102
        self._guard("log_hyperparams", params)

    @rank_zero_only
    def log_image(
        self, key: str, images: list[Any], step: int | None = None, **kwargs: Any
    ) -> None:  # noqa: D102
        self._guard("log_image", key, images, step, **kwargs)

    @rank_zero_only
    def log_table(
        self,
        key: str,
        columns: list[str] | None = None,
        data: list[list[Any]] | None = None,
        dataframe: Any = None,
        step: int | None = None,
    ) -> None:  # noqa: D102
        self._guard("log_table", key, columns, data, dataframe, step)

    @rank_zero_only
    def finalize(self, status: str) -> None:
        """Finish the W&B run; for an offline run, print how to upload it."""
        if self._finished:
            return
        self._finished = True
        self._guard("finalize", status)
        run = self._experiment
        if run is None or self.mode == "disabled":
            return
        run_dir = Path(run.dir).parent
        try:
            # Lightning finalizes an interrupted or failed fit with "failed": W&B shows it so
            # (a SLURM requeue's "finished" is not a failure: the run resumes)
            run.finish(exit_code=1 if status == "failed" else 0)
        except Exception as err:
            warnings.warn(f"W&B failed to finish the run ({err})", stacklevel=2)
        if self.mode == "offline" and self.announce_offline:
            print(f"W&B offline run saved in {run_dir}\n  upload it with: wandb sync {run_dir}")
