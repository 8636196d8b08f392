"""The recipe's summary run in W&B: one run per recipe, updated on every runner call.

:func:`log_summary_run` logs the summary table (one row per variant: the summary's fields,
the axis labels and per-class IoU) and the summary plots to a W&B run with
``job_type="summary"``, ``group=<recipe>`` and a fixed id kept in
``<recipe dir>/_summary/run_id``, so every call updates the same run. Offline, the previous
offline copy of that run is replaced (it is fully superseded by the new one), so
``wandb sync`` uploads one summary.
"""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from seglit.io import finite
from seglit.run_folder import SUMMARY_RUN_DIR, new_run_id
from seglit.summary.rows import row_dict
from seglit.summary.tables import CSV_FIELDS

SUMMARY_FIELDS = CSV_FIELDS  # the columns of summary.csv
RUN_ID_FILE = "run_id"


def summary_table_rows(rows: Sequence[Any]) -> tuple[list[str], list[list[Any]]]:
    """Columns and data of the summary table: summary fields, axis labels, per-class IoU.

    Args:
        rows: :class:`seglit.summary.Row` objects or their dicts (``summary.json`` rows).
    """
    dicts = [row_dict(r) for r in rows]
    axes = list(dict.fromkeys(k for d in dicts for k in (d.get("labels") or {})))
    classes = list(dict.fromkeys(k for d in dicts for k in (d.get("per_class_iou") or {})))
    columns = SUMMARY_FIELDS + axes + [f"IoU/{c}" for c in classes]
    data = []
    for d in dicts:
        labels = d.get("labels") or {}
        ious = d.get("per_class_iou") or {}
        line = [finite(d.get(f)) for f in SUMMARY_FIELDS]
        line += [labels.get(a) for a in axes]
        line += [finite(ious.get(c)) for c in classes]
        data.append(line)
    return columns, data


def log_summary_run(
    recipe_name: str,
    rows: Sequence[Any],
    recipe_dir: str | Path,
    project: str = "seglit",
    mode: str = "auto",
    plots: Sequence[str | Path] = (),
    entity: str | None = None,
) -> Path | None:
    """Log the recipe's summary table and plots to its one W&B summary run.

    The run has ``group=recipe_name``, ``job_type="summary"``,
    ``name=f"{recipe_name}-summary"`` and the id kept in ``<recipe_dir>/_summary/run_id``;
    it logs ``summary/table`` (one row per variant: the summary's fields, the axis labels
    and per-class IoU), each plot as ``summary/<plot file stem>`` and, in the run summary,
    ``mIoU/<variant>`` for every finished variant. Offline without credentials (see
    :mod:`seglit.wandb.logger`); its files go to ``<recipe_dir>/_summary/wandb/``, replacing
    the previous offline copy of the same run.

    Args:
        recipe_name: The recipe's name (the W&B group of its runs).
        rows: The summary rows (:class:`seglit.summary.Row` or dicts).
        recipe_dir: ``<out>/<recipe name>``.
        project: W&B project.
        mode: ``"auto"``, ``"online"``, ``"offline"`` or ``"disabled"``.
        plots: The summary's files (:func:`seglit.summary.write_summary`): the PNG ones
            are attached (missing files are skipped).
        entity: W&B entity.

    Returns:
        The W&B run folder, or ``None`` when W&B is disabled or failed (a warning says why).
    """
    from seglit.wandb.logger import WandbLogger

    save_dir = Path(recipe_dir) / SUMMARY_RUN_DIR
    try:
        import wandb

        run_id = _summary_run_id(save_dir, recipe_name)
        for old in (save_dir / "wandb").glob(f"offline-run-*-{run_id}"):
            shutil.rmtree(old, ignore_errors=True)  # superseded by the run written now
        logger = WandbLogger(
            project=project,
            name=f"{recipe_name}-summary",
            group=recipe_name,
            job_type="summary",
            save_dir=str(save_dir),
            id=run_id,
            mode=mode,
            entity=entity,
            tags=["summary"],
            announce_offline=False,
        )
        if logger.mode == "disabled":
            return None
        run = logger.experiment
        if logger.mode == "disabled":  # the fallback after a failed start
            return None
        columns, data = summary_table_rows(rows)
        payload: dict[str, Any] = {"summary/table": wandb.Table(columns=columns, data=data)}
        for plot in plots:
            path = Path(plot)
            if path.suffix == ".png" and path.is_file():
                payload[f"summary/{path.stem}"] = wandb.Image(str(path), caption=path.name)
        run.config.update({"recipe": recipe_name, "variants": len(data)}, allow_val_change=True)
        run.log(payload)
        for d in map(row_dict, rows):
            if d.get("mIoU_mean") is not None:
                run.summary[f"mIoU/{d['variant']}"] = d["mIoU_mean"]
        run_dir = Path(run.dir).parent
        logger.finalize("success")
        return run_dir
    except Exception as err:
        warnings.warn(f"W&B summary run for {recipe_name!r} failed ({err}); skipped.", stacklevel=2)
        return None


def _summary_run_id(save_dir: Path, recipe_name: str) -> str:
    """The recipe's summary run id: created once, then read from ``_summary/run_id``."""
    path = save_dir / RUN_ID_FILE
    if path.is_file() and path.read_text().strip():
        return path.read_text().strip()
    run_id = new_run_id(f"{recipe_name}-summary")
    save_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(run_id + "\n")
    return run_id
