"""The summary of an ablation: one row per config, its statistics, tables and plots.

* :mod:`seglit.summary.rows`: :class:`Row` and :func:`build_rows` (seed runs aggregated);
* :mod:`seglit.summary.stats`: 95% intervals (seeds and an image bootstrap) and power;
* :mod:`seglit.summary.tables`: the Markdown table, verdict lines, checkerboard table, CSV;
* :mod:`seglit.summary.plots`: the mIoU plot and the per-class IoU heatmap.

:func:`write_summary` writes them all into the recipe's folder and returns the files it
wrote, so nobody else spells their names. Importing this package imports neither torch
nor Lightning (nor matplotlib, until a plot is drawn).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from seglit.io import atomic_write_text, write_json
from seglit.run_folder import SUMMARY_CSV, SUMMARY_JSON, SUMMARY_MD
from seglit.summary.plots import write_plots
from seglit.summary.rows import Row, build_rows, row_dict
from seglit.summary.tables import csv_text, summary_text

__all__ = ["Row", "build_rows", "row_dict", "summary_text", "write_summary"]


def write_summary(recipe_dir: str | Path, recipe_name: str, rows: list[Row]) -> list[Path]:
    """Write ``summary.md``, ``summary.csv``, ``summary.json`` and the plots.

    Args:
        recipe_dir: ``<out>/<recipe name>``.
        recipe_name: The recipe's name (``summary.md``'s title).
        rows: The summary rows (:func:`build_rows`).

    Returns:
        The files written: ``summary.md``, ``summary.csv``, ``summary.json``, then the
        plots (:func:`seglit.summary.plots.write_plots`).
    """
    recipe_dir = Path(recipe_dir)
    markdown = recipe_dir / SUMMARY_MD
    table = recipe_dir / SUMMARY_CSV
    record = recipe_dir / SUMMARY_JSON
    atomic_write_text(markdown, f"# {recipe_name}\n\n{summary_text(rows)}\n")
    atomic_write_text(table, csv_text(rows))
    payload = {"recipe": recipe_name, "rows": [asdict(r) for r in rows]}
    write_json(record, payload)
    return [markdown, table, record, *write_plots(rows, recipe_dir)]
