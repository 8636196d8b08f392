"""What the runner will do with each variant: its config, fingerprint and current status.

Every variant's config is prepared (overrides applied, outputs pointed at its folder),
resolved by the seglit CLI's parser and fingerprinted. Comparing the fingerprint with what
the variant's folder holds gives its status (:func:`seglit.run_folder.run_status`): a
finished result is reused only under the same fingerprint; a folder holding another
config's result is a conflict the runner reports (with the keys that differ) before it
trains anything.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from seglit.config_files import read_config_files
from seglit.fingerprint import Fingerprint, config_differences
from seglit.io import atomic_write_text
from seglit.recipe import Recipe, Variant, deep_merge, get_dotted, set_dotted
from seglit.run_folder import (
    ARCHIVE_DIR,
    CHECKPOINT_DIR,
    CONFIG_FILE,
    LOCK_FILE,
    MISMATCH,
    WANDB_LOGGER_CLASS,
    WANDB_LOGGER_CLASSES,
    new_run_id,
    read_fingerprint,
    run_status,
    write_fingerprint,
)


@dataclass
class VariantPlan:
    """One variant as the runner sees it.

    Attributes:
        index: 1-based position in the recipe (for ``[i/n]`` console prefixes).
        variant: The recipe's variant.
        run_dir: ``<out>/<recipe>/<variant>``.
        config: The config to run (outputs and W&B run set).
        resolved: The config resolved by the CLI's parser (every default filled in).
        fingerprint: The fingerprint of ``resolved``.
        status: What ``run_dir`` holds for this fingerprint (``finished``, ``failed``,
            ``partial``, ``pending`` or ``mismatch``).
    """

    index: int
    variant: Variant
    run_dir: Path
    config: dict[str, Any]
    resolved: dict[str, Any]
    fingerprint: Fingerprint
    status: str

    @property
    def name(self) -> str:
        """The variant's name."""
        return self.variant.name


def prepare_config(
    recipe: Recipe, variant: Variant, run_dir: Path, overrides: dict[str, Any]
) -> dict[str, Any]:
    """The variant's config with command-line overrides and its output locations filled in.

    The default logger becomes seglit's W&B logger (offline without credentials), named
    after the variant, grouped under the recipe, tagged with the axis values and the seed.
    """
    config = variant.config
    for key, value in overrides.items():
        set_dotted(config, key, value)
    read_config_files(config, "the command line")  # --data=other.yaml, as the recipe's
    trainer = config.setdefault("trainer", {})
    trainer["default_root_dir"] = str(run_dir)
    set_dotted(config, "checkpoint.dirpath", str(run_dir / CHECKPOINT_DIR))
    set_dotted(config, "run_summary.dirpath", str(run_dir))
    logger = trainer.get("logger", True)
    if logger is True:
        logger = {"class_path": WANDB_LOGGER_CLASS, "init_args": {}}
    if isinstance(logger, dict) and logger.get("class_path") in WANDB_LOGGER_CLASSES:
        tags = [f"{k.rsplit('.', 1)[-1]}={label}" for k, label in variant.labels.items()]
        if variant.seed is not None:
            tags.append(f"seed={variant.seed}")
        run = {
            "name": variant.name,
            "group": recipe.name,
            "save_dir": str(run_dir),
            "tags": tags,
            "job_type": "fit",
            "run_config": {
                "seglit": {
                    "recipe": recipe.name,
                    "variant": variant.name,
                    "config_name": variant.group,
                    "seed": variant.seed,
                    "axes": {k.rsplit(".", 1)[-1]: v for k, v in variant.labels.items()},
                }
            },
        }
        logger = deep_merge(logger, {"init_args": run})
    trainer["logger"] = logger  # another logger, or none, stays as the recipe wrote it
    return config


def plan_variants(
    recipe: Recipe,
    variants: list[Variant],
    recipe_dir: Path,
    overrides: dict[str, Any],
    resolve: Any,
) -> list[VariantPlan]:
    """Prepare, resolve and fingerprint every variant, and read its folder's status.

    Args:
        recipe: The recipe.
        variants: Its variants (all of them: the summary needs every fingerprint).
        recipe_dir: ``<out>/<recipe name>``.
        overrides: Command-line ``--dotted.key=value`` overrides.
        resolve: ``resolve(config, source=...) -> resolved config`` (the CLI's parser), or
            ``None`` when it recorded why the config does not parse (that variant is left
            out of the plans).

    Raises:
        seglit.cli.ConfigError: A variant's config does not parse (names the variant).
    """
    plans = []
    for index, variant in enumerate(variants, 1):
        run_dir = recipe_dir / variant.name
        config = prepare_config(recipe, variant, run_dir, overrides)
        resolved = resolve(config, source=f"{recipe.path} (variant {variant.name})")
        if resolved is None:  # the resolver recorded why it does not parse
            continue
        fingerprint = Fingerprint.of(resolved)
        logger_run = get_dotted(config, "trainer.logger.init_args.run_config.seglit")
        if isinstance(logger_run, dict):  # seglit's W&B logger (the logger never decides)
            logger_run["fingerprint"] = fingerprint.digest
        status = run_status(run_dir, fingerprint.digest)
        plans.append(VariantPlan(index, variant, run_dir, config, resolved, fingerprint, status))
    return plans


def conflict_message(plan: VariantPlan) -> str:
    """Why ``plan.run_dir`` cannot be reused: the keys that differ, and the ways out."""
    recorded = read_fingerprint(plan.run_dir)
    if recorded is None:
        what = "a result without a fingerprint (from an older seglit, or written by hand)"
        differences: list[str] = []
    else:
        what = f"the result of another config (fingerprint {recorded.digest})"
        differences = config_differences(recorded.config, plan.fingerprint.config)
        if not differences and recorded.seglit_version != plan.fingerprint.seglit_version:
            differences = [
                f"seglit version: {recorded.seglit_version} -> {plan.fingerprint.seglit_version}"
            ]
    lines = [f"{plan.run_dir} holds {what}, not this recipe's {plan.name}"]
    lines += [f"    {line}" for line in differences[:12]]
    if len(differences) > 12:
        lines.append(f"    ... and {len(differences) - 12} more")
    return "\n".join(lines)


def archive(plan: VariantPlan) -> Path:
    """Move ``plan.run_dir`` to ``<recipe dir>/_archive/<variant>-<time>``; return that path."""
    target = plan.run_dir.parent / ARCHIVE_DIR / f"{plan.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(plan.run_dir), str(target))
    return target


def write_run_config(plan: VariantPlan) -> Path:
    """Write the variant's ``config.yaml`` and ``fingerprint.json`` before it runs.

    A W&B run id is created on the first write and kept on later ones, so a resumed
    variant continues the same W&B run (same fingerprint, same run).
    """
    path = plan.run_dir / CONFIG_FILE
    logger = get_dotted(plan.config, "trainer.logger")
    if isinstance(logger, dict) and logger.get("class_path") in WANDB_LOGGER_CLASSES:
        previous = yaml.safe_load(path.read_text()) if path.is_file() else None
        run_id = get_dotted(previous or {}, "trainer.logger.init_args.id")
        if plan.status == MISMATCH or not run_id:
            run_id = new_run_id(plan.name)
        logger.setdefault("init_args", {})["id"] = run_id
    atomic_write_text(path, yaml.safe_dump(plan.config, sort_keys=False))
    write_fingerprint(plan.run_dir, plan.fingerprint)
    return path


def locked_elsewhere(plan: VariantPlan) -> bool:
    """Whether another process holds the variant folder's lock (is training it now)."""
    from filelock import FileLock, Timeout

    lock = FileLock(str(plan.run_dir / LOCK_FILE))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return True
    except OSError:
        return False
    lock.release()
    return False


def busy_message(plan: VariantPlan) -> str:
    """A variant folder being trained right now by another runner, with another config."""
    details = conflict_message(plan).split("\n", 1)
    differences = f" ({plan.name}'s config differs):\n{details[1]}" if len(details) > 1 else ""
    return (
        f"{plan.run_dir} is being trained right now by another process with another config"
        f"{differences}\nwait for it to finish, or use another --out for this configuration"
    )
