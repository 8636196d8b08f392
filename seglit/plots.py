"""Summary plots of an ablation: mIoU per variant and a per-class IoU heatmap.

Both take the summary rows (:class:`seglit.report.Row` or their ``summary.json`` dicts),
draw with matplotlib's Agg canvas (no display, no global pyplot state) and write a PNG.
Variants without results (failed or pending) stay in the plots, marked as such.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np

MIOU_PLOT = "summary_miou.png"
CLASS_HEATMAP = "summary_class_iou.png"


def plot_miou(rows: Sequence[Any], path: str | Path) -> Path:
    """Bar chart of val mIoU per variant, error bars = std over seeds, baseline highlighted.

    Args:
        rows: Summary rows, in the order to draw them.
        path: PNG file to write (parent folders are created).

    Returns:
        ``path``.
    """
    from matplotlib.patches import Patch

    data = [_row_dict(r) for r in rows]
    names = [str(d.get("variant")) for d in data]
    means = [_num(d.get("mIoU_mean")) for d in data]
    stds = [_num(d.get("mIoU_std")) or 0.0 for d in data]
    fig, ax = _figure(width=max(4.0, 0.7 * len(data) + 2.0), height=4.0)
    x = np.arange(len(data))
    heights = [m if m is not None else 0.0 for m in means]
    colors = ["tab:orange" if d.get("baseline") else "tab:blue" for d in data]
    errors = [s if m is not None else 0.0 for m, s in zip(means, stds)]
    bars = ax.bar(
        x, heights, yerr=errors, capsize=4, color=colors, edgecolor="black", linewidth=0.5
    )
    top = max([m + s for m, s in zip(heights, errors)] + [0.0])
    ylim = max(top * 1.3, 0.05)
    for bar, mean, err, d in zip(bars, means, errors, data):
        center = bar.get_x() + bar.get_width() / 2
        if mean is None:
            ax.text(
                center,
                0.02 * ylim,
                str(d.get("status") or "no result"),
                ha="center",
                va="bottom",
                fontsize=8,
                color="tab:red",
            )
        else:
            ax.text(
                center,
                mean + err + 0.01 * ylim,
                f"{mean:.3f}",
                ha="center",
                va="bottom",
                fontsize=7,
            )
    ax.set_xticks(x, names, rotation=45, ha="right", fontsize=8)
    ax.set_ylabel("val mIoU (mean ± std over seeds)")
    ax.set_ylim(0.0, ylim)
    ax.set_title("mIoU per variant")
    ax.legend(
        handles=[
            Patch(color="tab:orange", label="baseline"),
            Patch(color="tab:blue", label="variant"),
        ],
        loc="upper left",
        ncols=2,
        fontsize=8,
    )
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


def plot_class_heatmap(rows: Sequence[Any], path: str | Path) -> Path:
    """Heatmap of per-class IoU: one row per variant, one column per class.

    Cells without a value (a failed variant, a class absent from the split) are grey.

    Args:
        rows: Summary rows, in the order to draw them.
        path: PNG file to write (parent folders are created).

    Returns:
        ``path``.
    """
    data = [_row_dict(r) for r in rows]
    classes = list(dict.fromkeys(c for d in data for c in (d.get("per_class_iou") or {})))
    names = [str(d.get("variant")) + (" (baseline)" if d.get("baseline") else "") for d in data]
    matrix = np.full((len(data), len(classes)), np.nan)
    for i, d in enumerate(data):
        ious = d.get("per_class_iou") or {}
        for j, c in enumerate(classes):
            value = _num(ious.get(c))
            if value is not None:
                matrix[i, j] = value
    fig, ax = _figure(
        width=max(4.0, 0.45 * len(classes) + 3.0), height=max(2.5, 0.4 * len(data) + 1.8)
    )
    if not classes or not data:
        ax.text(0.5, 0.5, "no per-class IoU yet", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return _save(fig, path)
    import matplotlib

    cmap = matplotlib.colormaps["viridis"].with_extremes(bad="lightgrey")
    image = ax.imshow(np.ma.masked_invalid(matrix), cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto")
    fig.colorbar(image, ax=ax, label="IoU")
    ax.set_xticks(np.arange(len(classes)), classes, rotation=60, ha="right", fontsize=8)
    ax.set_yticks(np.arange(len(data)), names, fontsize=8)
    if matrix.size <= 400:
        for (i, j), value in np.ndenumerate(matrix):
            if not math.isnan(value):
                ax.text(
                    j,
                    i,
                    f"{value:.2f}",
                    ha="center",
                    va="center",
                    fontsize=6,
                    color="white" if value < 0.5 else "black",
                )
    ax.set_title("per-class IoU (variants x classes)")
    return _save(fig, path)


def write_plots(rows: Sequence[Any], recipe_dir: str | Path) -> list[Path]:
    """Write both summary plots into ``recipe_dir``; return their paths."""
    recipe_dir = Path(recipe_dir)
    return [
        plot_miou(rows, recipe_dir / MIOU_PLOT),
        plot_class_heatmap(rows, recipe_dir / CLASS_HEATMAP),
    ]


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, fig.add_subplot()


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, format="png")
    tmp.replace(path)
    return path


def _row_dict(row: Any) -> dict[str, Any]:
    if is_dataclass(row) and not isinstance(row, type):
        return asdict(row)
    if isinstance(row, Mapping):
        return dict(row)
    raise TypeError(f"summary rows must be seglit.report.Row or dicts, got {type(row).__name__}")


def _num(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value
