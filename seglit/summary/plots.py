"""Summary plots of an ablation: mIoU per variant and a per-class IoU heatmap.

Both take the summary rows (:class:`seglit.summary.Row` or their ``summary.json`` dicts) and
draw on matplotlib's Agg canvas (no display, no global pyplot state). ``*_figure`` builds and
returns the :class:`~matplotlib.figure.Figure`; ``plot_*`` writes it to a PNG atomically.

* mIoU: one point per variant, the y axis fitted to the values (not from 0, so 0.924 and
  0.930 are far apart), error bars = std over seeds where a variant has several finished
  seeds, the baseline highlighted and drawn as a reference line, failed or pending variants
  marked with their status. When the rows carry differences to the baseline, a second panel
  shows each Δ with its 95% confidence interval and a zero line.
* Per-class IoU: variants x classes. With a baseline, the colour is the difference to the
  baseline's IoU of that class (diverging map centred at 0); otherwise the IoU itself, the
  colour scale spanning the data's range. Cells are annotated with the IoU; missing cells
  are grey.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from seglit.run_folder import CLASS_HEATMAP, MIOU_PLOT
from seglit.summary.rows import row_dict

BASELINE_COLOUR = "tab:orange"
VARIANT_COLOUR = "tab:blue"
MISSING_COLOUR = "tab:red"
MDE_COLOUR = "0.6"
BETTER_COLOUR = "tab:green"
WORSE_COLOUR = "tab:red"
UNSURE_COLOUR = "tab:gray"
MISSING_CELL = "lightgrey"

MIN_SPAN = 0.005
"""Smallest y range of the mIoU panel (0.5 mIoU points), used when all values are equal."""

HeatmapMode = Literal["auto", "absolute", "delta"]


# ------------------------------------------------------------------------------ mIoU plot
def miou_figure(rows: Sequence[Any]):
    """Build the mIoU figure: mIoU per variant and, if rows carry ``delta``, Δ vs baseline.

    Args:
        rows: Summary rows, in the order to draw them.

    Returns:
        The :class:`~matplotlib.figure.Figure`; ``fig.axes[0]`` is the mIoU panel and
        ``fig.axes[1]`` the Δ panel (present when a variant other than the baseline has a
        ``delta``). Each point is an errorbar container
        labelled with its variant name (``has_yerr`` only with several finished seeds).
    """
    data = [row_dict(r) for r in rows]
    with_delta = any(_num(d.get("delta")) is not None and not d.get("baseline") for d in data)
    fig = _figure(width=max(5.5, 0.8 * len(data) + 2.5), height=6.5 if with_delta else 4.2)
    if with_delta:
        ax, delta_ax = fig.subplots(2, 1, sharex=True, height_ratios=[3, 2])
    else:
        ax, delta_ax = fig.add_subplot(), None
    _draw_miou(ax, data)
    if delta_ax is not None:
        _draw_delta(delta_ax, data)
    bottom = delta_ax if delta_ax is not None else ax
    names = [str(d.get("variant")) for d in data]
    bottom.set_xticks(np.arange(len(data)), names, rotation=30, ha="right", fontsize=8)
    bottom.set_xlim(-0.6, len(data) - 0.4)
    for label, d in zip(bottom.get_xticklabels(), data):
        if d.get("baseline"):
            label.set_fontweight("bold")
    return fig


def plot_miou(rows: Sequence[Any], path: str | Path) -> Path:
    """Write :func:`miou_figure` as a PNG.

    Args:
        rows: Summary rows, in the order to draw them.
        path: PNG file to write (parent folders are created).

    Returns:
        ``path``.
    """
    return _save(miou_figure(rows), path)


def _draw_miou(ax, data: list[dict[str, Any]]) -> None:
    from matplotlib.lines import Line2D

    means = [_num(d.get("mIoU_mean")) for d in data]
    errors = [_seed_std(d) for d in data]
    ax.set_title("val mIoU per variant", loc="left", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    ax.tick_params(axis="y", labelsize=8)
    values = [(m, e) for m, e in zip(means, errors) if m is not None]
    if not values:
        ax.set_ylim(0.0, 1.0)
        ax.text(0.5, 0.5, "no finished runs yet", ha="center", va="center", transform=ax.transAxes)
    else:
        low = min(m - (e or 0.0) for m, e in values)
        high = max(m + (e or 0.0) for m, e in values)
        ax.set_ylim(*data_limits(low, high, floor=0.0))
    base = next((m for m, d in zip(means, data) if d.get("baseline") and m is not None), None)
    if base is not None:
        ax.axhline(base, color=BASELINE_COLOUR, linestyle="--", linewidth=1, alpha=0.7)
    missing_axis = ax.get_xaxis_transform()  # x in data, y in axes fraction
    for i, (mean, err, d) in enumerate(zip(means, errors, data)):
        status = _status(d)
        if mean is None:
            ax.plot(i, 0.04, "x", color=MISSING_COLOUR, ms=8, mew=2, transform=missing_axis)
            ax.text(
                i,
                0.09,
                status,
                transform=missing_axis,
                rotation=90,
                ha="center",
                va="bottom",
                fontsize=8,
                color=MISSING_COLOUR,
            )
            continue
        colour = BASELINE_COLOUR if d.get("baseline") else VARIANT_COLOUR
        complete = d.get("status") in (None, "finished")
        ax.errorbar(
            i,
            mean,
            yerr=err,
            fmt="D" if d.get("baseline") else "o",
            ms=7,
            color=colour,
            mfc=colour if complete else "white",
            capsize=4,
            label=str(d.get("variant")),
        )
        text = f"{mean:.3f}" + (f"\n±{err:.3f}" if err is not None else "")
        ax.annotate(
            text,
            (i, mean + (err or 0.0)),
            xytext=(0, 4),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=7,
        )
        if not complete:
            ax.annotate(
                status,
                (i, mean - (err or 0.0)),
                xytext=(0, -6),
                textcoords="offset points",
                ha="center",
                va="top",
                fontsize=7,
                color=MISSING_COLOUR,
            )
    has_err = any(e is not None for e in errors)
    ax.set_ylabel("val mIoU" + (" (mean ± std over seeds)" if has_err else ""), fontsize=9)
    handles = [
        Line2D([], [], marker="D", ls="--", color=BASELINE_COLOUR, label="baseline"),
        Line2D([], [], marker="o", ls="", color=VARIANT_COLOUR, label="variant"),
    ]
    if any(d.get("status") not in (None, "finished") for d in data):
        handles.append(
            Line2D([], [], marker="o", ls="", color=VARIANT_COLOUR, mfc="white", label="incomplete")
        )
    if any(m is None for m in means):
        handles.append(Line2D([], [], marker="x", ls="", color=MISSING_COLOUR, label="no result"))
    ax.figure.legend(
        handles=handles, loc="outside upper right", ncols=len(handles), fontsize=7, frameon=False
    )


def _draw_delta(ax, data: list[dict[str, Any]]) -> None:
    from matplotlib.patches import Rectangle

    ax.set_title(
        "Δ mIoU vs baseline, 95% CI (green/red: CI excludes 0; grey band: ±MDE at 80% power)",
        loc="left",
        fontsize=10,
    )
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.grid(axis="y", alpha=0.3)
    ax.tick_params(axis="y", labelsize=8)
    ax.set_ylabel("Δ val mIoU", fontsize=9)
    spans = [0.0]
    for i, d in enumerate(data):
        delta = _num(d.get("delta"))
        if delta is None:
            continue
        if d.get("baseline"):
            ax.plot(i, 0.0, "D", ms=7, color=BASELINE_COLOUR)
            ax.annotate(
                "baseline",
                (i, 0.0),
                xytext=(0, 6),
                textcoords="offset points",
                ha="center",
                va="bottom",
                fontsize=7,
            )
            continue
        low, high = _num(d.get("delta_ci_low")), _num(d.get("delta_ci_high"))
        has_ci = low is not None and high is not None
        colour = UNSURE_COLOUR
        if has_ci and low > 0:
            colour = BETTER_COLOUR
        elif has_ci and high < 0:
            colour = WORSE_COLOUR
        mde = _num(d.get("mde"))
        if mde is not None:
            band = Rectangle((i - 0.25, -mde), 0.5, 2 * mde, color=MDE_COLOUR, alpha=0.3, lw=0)
            ax.add_patch(band)
            spans += [-mde, mde]
        yerr = [[delta - low], [high - delta]] if has_ci else None
        ax.errorbar(i, delta, yerr=yerr, fmt="o", ms=6, color=colour, capsize=4)
        spans += [low, high] if has_ci else [delta]
        top = high if has_ci else delta
        ax.annotate(
            f"{delta:+.3f}",
            (i, top),
            xytext=(0, 4),
            textcoords="offset points",
            ha="center",
            va="bottom",
            fontsize=7,
        )
    ax.set_ylim(*data_limits(min(spans), max(spans)))


def data_limits(
    low: float, high: float, min_span: float = MIN_SPAN, floor: float | None = None
) -> tuple[float, float]:
    """Axis limits that fit ``[low, high]`` with a margin (a little more on top, for labels).

    Args:
        low: Smallest value to show (lower end of its error bar).
        high: Largest value to show (upper end of its error bar).
        min_span: Smallest range the limits describe (when all values are nearly equal).
        floor: The lower limit never goes below this (e.g. 0 for mIoU).

    Returns:
        ``(bottom, top)``.
    """
    span = max(high - low, min_span)
    centre_pad = (span - (high - low)) / 2
    bottom = low - centre_pad - 0.15 * span
    top = high + centre_pad + 0.3 * span
    if floor is not None:
        bottom = max(bottom, floor)
    return bottom, top


# ------------------------------------------------------------------------------ heatmap
def class_heatmap_figure(rows: Sequence[Any], mode: HeatmapMode = "auto"):
    """Build the per-class IoU heatmap: one row per variant, one column per class.

    Args:
        rows: Summary rows, in the order to draw them.
        mode: ``"absolute"`` colours the IoU, the scale spanning the data's min..max;
            ``"delta"`` colours the difference to the baseline's IoU of the class on a
            diverging map centred at 0 (symmetric, ± the largest difference); ``"auto"`` is
            ``"delta"`` when a baseline row and at least one other row have per-class IoU.
            The cells are annotated with the IoU in both modes; cells without a value (or
            without a difference) are grey.

    Returns:
        The :class:`~matplotlib.figure.Figure`; ``fig.axes[0].images[0]`` is the heatmap.

    Raises:
        ValueError: ``mode="delta"`` without a baseline row holding per-class IoU.
    """
    data = [row_dict(r) for r in rows]
    classes = list(dict.fromkeys(c for d in data for c in (d.get("per_class_iou") or {})))
    iou = np.full((len(data), len(classes)), np.nan)
    for i, d in enumerate(data):
        ious = d.get("per_class_iou") or {}
        for j, c in enumerate(classes):
            value = _num(ious.get(c))
            if value is not None:
                iou[i, j] = value
    longest = max((len(str(d.get("variant"))) for d in data), default=8)
    fig = _figure(
        width=max(4.5, 0.55 * len(classes) + 0.07 * longest + 2.3),
        height=max(2.8, 0.32 * len(data) + 0.07 * max(map(len, classes), default=5) + 1.6),
    )
    ax = fig.add_subplot()
    if not classes or np.isnan(iou).all():
        ax.text(0.5, 0.5, "no per-class IoU yet", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig

    import matplotlib
    from matplotlib.colors import Normalize

    has_values = ~np.isnan(iou).all(axis=1)
    base = next((i for i, d in enumerate(data) if d.get("baseline") and has_values[i]), None)
    if mode == "auto":
        mode = "delta" if base is not None and has_values.sum() > 1 else "absolute"
    if mode == "delta":
        if base is None:
            raise ValueError("mode='delta' needs a baseline row with per-class IoU")
        shown = iou - iou[base]
        limit = max(float(np.nanmax(np.abs(shown))) if not np.isnan(shown).all() else 0.0, 1e-3)
        norm = Normalize(-limit, limit)
        cmap = matplotlib.colormaps["RdBu"]
        label = "IoU − baseline IoU"
        title = f"per-class IoU (colour: difference to {data[base].get('variant')}; text: IoU)"
    elif mode == "absolute":
        shown = iou
        low, high = float(np.nanmin(iou)), float(np.nanmax(iou))
        if high - low < 1e-3:
            low, high = low - 0.005, high + 0.005
        norm = Normalize(low, high)
        cmap = matplotlib.colormaps["viridis"]
        label = "IoU"
        title = "per-class IoU"
    else:
        raise ValueError(f"mode must be 'auto', 'absolute' or 'delta', got {mode!r}")
    cmap = cmap.with_extremes(bad=MISSING_CELL)
    image = ax.imshow(np.ma.masked_invalid(shown), cmap=cmap, norm=norm, aspect="auto")
    fig.colorbar(image, ax=ax, label=label, shrink=0.9)
    names = [str(d.get("variant")) + (" (baseline)" if d.get("baseline") else "") for d in data]
    ax.set_xticks(np.arange(len(classes)), classes, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(np.arange(len(data)), names, fontsize=8)
    if base is not None:
        ax.get_yticklabels()[base].set_fontweight("bold")
    fontsize = 7 if len(classes) <= 12 else 6
    for (i, j), value in np.ndenumerate(iou):
        if math.isnan(value):
            continue
        cell = shown[i, j]
        colour = MISSING_CELL if math.isnan(cell) else cmap(norm(cell))
        ax.text(
            j,
            i,
            f"{value:.2f}",
            ha="center",
            va="center",
            fontsize=fontsize,
            color=_text_colour(colour),
        )
    ax.set_title(title, loc="left", fontsize=10)
    ax.tick_params(length=0)
    return fig


def plot_class_heatmap(rows: Sequence[Any], path: str | Path, mode: HeatmapMode = "auto") -> Path:
    """Write :func:`class_heatmap_figure` as a PNG.

    Args:
        rows: Summary rows, in the order to draw them.
        path: PNG file to write (parent folders are created).
        mode: See :func:`class_heatmap_figure`.

    Returns:
        ``path``.
    """
    return _save(class_heatmap_figure(rows, mode), path)


def write_plots(rows: Sequence[Any], recipe_dir: str | Path) -> list[Path]:
    """Write both summary plots into ``recipe_dir``; return their paths."""
    recipe_dir = Path(recipe_dir)
    return [
        plot_miou(rows, recipe_dir / MIOU_PLOT),
        plot_class_heatmap(rows, recipe_dir / CLASS_HEATMAP),
    ]


# ------------------------------------------------------------------------------ helpers
def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    fig.savefig(tmp, format="png")
    tmp.replace(path)
    return path


def _text_colour(colour: Any) -> str:
    """Black or white, whichever reads better on ``colour`` (WCAG relative luminance)."""
    from matplotlib.colors import to_rgb

    channels = np.asarray(to_rgb(colour))
    linear = np.where(channels <= 0.03928, channels / 12.92, ((channels + 0.055) / 1.055) ** 2.4)
    luminance = float(linear @ np.array([0.2126, 0.7152, 0.0722]))
    return "black" if luminance > 0.179 else "white"


def _seed_std(d: Mapping[str, Any]) -> float | None:
    """The std over seeds, or ``None`` for a row with fewer than two finished seeds."""
    if _num(d.get("mIoU_mean")) is None or int(d.get("finished") or 0) < 2:
        return None
    return _num(d.get("mIoU_std"))


def _status(d: Mapping[str, Any]) -> str:
    status = str(d.get("status") or "no result")
    runs = int(d.get("runs") or 0)
    return f"{status} {int(d.get('finished') or 0)}/{runs}" if runs else status


def _num(value: Any) -> float | None:
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value
