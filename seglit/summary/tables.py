"""The summary's text: the Markdown table, the verdict lines, the checkerboard table, the CSV.

What ``summary.md`` and ``summary.csv`` hold (:func:`seglit.summary.write_summary` writes
them) and what the runner prints last (:func:`summary_text`).
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import asdict
from typing import Any

from seglit.summary.rows import Row, row_dict
from seglit.summary.stats import ONE_SEED, UNPAIRED


def _fmt(value: float | None, digits: int = 4) -> str:
    return (
        "-"
        if value is None or (isinstance(value, float) and math.isnan(value))
        else f"{value:.{digits}f}"
    )


def _fmt_params(value: int | None) -> str:
    if value is None:
        return "-"
    return f"{value / 1e6:.2f}M" if value >= 1e5 else f"{value / 1e3:.1f}K"


def _fmt_seeds(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "-"
    return f"{math.ceil(value)}" if value < 1e4 else ">10000"


def verdict_lines(rows: list[Any]) -> list[str]:
    """One plain sentence per compared row: what its interval and power answer.

    ``answered`` (the 95% interval excludes 0), ``no effect larger than MDE`` (the
    interval lies inside ``±MDE``) or ``inconclusive: about N seeds needed`` (N seed runs per
    side would detect the observed Δ with 80% power). A comparison of one seed run per side
    says so: its interval knows only which images were drawn, not what another seed would
    do.
    """
    lines = []
    for r in map(row_dict, rows):
        if r.get("baseline") or r.get("verdict") is None:
            continue
        interval = f"Δ {r['delta']:+.4f} [{r['delta_ci_low']:+.4f}, {r['delta_ci_high']:+.4f}]"
        if r.get("delta_ci_seeds") == ONE_SEED:
            interval += ", one seed: images only"
        mde = f"MDE {r['mde']:.4f}"
        if r["verdict"] == "answered":
            text = f"answered ({interval}, {mde})"
        elif r["verdict"] == "no effect larger than MDE":
            text = f"no effect larger than {r['mde']:.4f} ({interval})"
        else:
            needed = _fmt_seeds(r.get("seeds_needed"))
            needed = (
                "no seed count detects Δ = 0" if needed == "-" else f"about {needed} seeds needed"
            )
            text = f"inconclusive: {needed} ({interval}, {mde})"
        lines.append(f"{r['variant']}: {text}")
    return lines


def checkerboard_table(rows: list[Any]) -> str:
    """The log-probabilities' checkerboard score over training, or ``""`` when no row has it.

    Per config: the mean over seeds at the first validation, at the last (± sd over seeds),
    the last one's difference to the baseline with the paired t interval (95%) over the
    seeds both measured, and what that answers (as :func:`verdict_lines` says it for the mIoU).
    """
    data = [row_dict(r) for r in rows]
    if not any(d.get("checkerboard_logits") is not None for d in data):
        return ""
    lines = [
        "| variant | logit checkerboard, first val | last val (± sd over seeds) "
        "| Δ last vs baseline (95% CI) | verdict |",
        "|---|---|---|---|---|",
    ]
    for d in data:
        end = d.get("checkerboard_logits")
        if end is None:
            lines.append(f"| {d['variant']} | - | - | - | - |")
            continue
        std = d.get("checkerboard_logits_std")
        end_text = f"{end:.5f}" + (f" ± {std:.5f}" if std is not None else "")
        low, high = d.get("checkerboard_logits_ci_low"), d.get("checkerboard_logits_ci_high")
        paired = d.get("checkerboard_logits_delta")  # over the seeds both configs measured
        if d.get("baseline"):
            delta = "baseline"
        elif low is None or paired is None:
            delta = "-"
        else:
            delta = f"{paired:+.5f} [{low:+.5f}, {high:+.5f}]"
        start = _fmt(d.get("checkerboard_logits_start"), 5)
        verdict = d.get("checkerboard_logits_verdict") or "-"
        mde = d.get("checkerboard_logits_mde")
        if verdict == "no effect larger than MDE" and mde is not None:
            verdict = f"no difference larger than {mde:.5f}"
        elif verdict == "inconclusive" and mde is not None:
            verdict = f"inconclusive (MDE {mde:.5f})"
        lines.append(f"| {d['variant']} | {start} | {end_text} | {delta} | {verdict} |")
    return "\n".join(lines)


def markdown_table(rows: list[Row]) -> str:
    """The summary as a Markdown table (also what the runner prints).

    ``val mIoU`` shows ``mean ± std`` over seeds when a row has several finished seed runs,
    the plain value otherwise. A ``Δ`` interval whose seed runs could not be paired (the
    two configs' runs with per-image confusion matrices have different seeds) says
    ``(seeds unpaired)``, one with a single seed run per side ``(one seed: images only)``.
    ``MDE`` is the smallest Δ the row's seeds and images detect with
    80% power at the 95% level, ``seeds for Δ`` the seed runs per side that would detect
    the observed Δ so (:func:`seglit.summary.stats.power`). The ``mIoU before CRF`` and
    ``checkerboard`` columns appear when some row has them.
    """
    crf = any(r.mIoU_before_crf is not None for r in rows)
    checker = any(r.checkerboard is not None for r in rows)
    header = ["variant", "status", "val mIoU"]
    header += ["mIoU before CRF"] if crf else []
    header += ["Δ vs baseline (95% CI)", "MDE", "seeds for Δ", "pixel acc"]
    header += ["checkerboard"] if checker else []
    header += ["params", "GFLOPs", "img/s", "peak MB", "wall s"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        status = r.status if r.finished == r.runs else f"{r.status} ({r.finished}/{r.runs})"
        cells = [r.variant, status, _miou_cell(r)]
        cells += [_fmt(r.mIoU_before_crf)] if crf else []
        cells += [_delta_cell(r), _fmt(r.mde), _fmt_seeds(r.seeds_needed), _fmt(r.acc)]
        cells += [_fmt(r.checkerboard, 5)] if checker else []
        cells += [
            _fmt_params(r.params),
            _fmt(r.gflops, 2),
            _fmt(r.images_per_sec, 1),
            _fmt(r.peak_mem_mb, 0),
            _fmt(r.wall_time_s, 1),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _miou_cell(r: Row) -> str:
    """``mean ± std`` over seeds, the plain value with one seed run, ``-`` without."""
    if r.mIoU_mean is None:
        return "-"
    if r.mIoU_std is None:
        return f"{r.mIoU_mean:.4f}"
    return f"{r.mIoU_mean:.4f} ± {r.mIoU_std:.4f}"


def _delta_cell(r: Row) -> str:
    """``Δ [low, high]`` (and whether its seeds were paired), or what stands in for it."""
    if r.baseline:
        return "baseline"
    if r.delta is None:
        return "-"
    if r.delta_ci_low is None:
        return f"{r.delta:+.4f}"
    note = {UNPAIRED: " (seeds unpaired)", ONE_SEED: " (one seed: images only)"}
    return (
        f"{r.delta:+.4f} [{r.delta_ci_low:+.4f}, {r.delta_ci_high:+.4f}]"
        f"{note.get(r.delta_ci_seeds, '')}"
    )


CSV_FIELDS = [
    "variant",
    "status",
    "runs",
    "finished",
    "mIoU_mean",
    "mIoU_std",
    "delta",
    "delta_ci_low",
    "delta_ci_high",
    "delta_ci_seeds",
    "mde",
    "seeds_needed",
    "verdict",
    "acc",
    "mIoU_before_crf",
    "checkerboard",
    "checkerboard_logits_start",
    "checkerboard_logits",
    "checkerboard_logits_std",
    "checkerboard_logits_delta",
    "checkerboard_logits_ci_low",
    "checkerboard_logits_ci_high",
    "checkerboard_logits_mde",
    "checkerboard_logits_verdict",
    "params",
    "gflops",
    "images_per_sec",
    "peak_mem_mb",
    "wall_time_s",
    "baseline",
]


def summary_text(rows: list[Row]) -> str:
    """The Markdown table, then :func:`checkerboard_table` and :func:`verdict_lines` when
    there is something to say (what ``summary.md`` holds under its title)."""
    text = markdown_table(rows)
    checker = checkerboard_table(rows)
    if checker:
        text += "\n\n" + checker
    verdicts = verdict_lines(rows)
    if verdicts:
        text += "\n\n" + "\n".join(f"- {line}" for line in verdicts)
    return text


def csv_text(rows: list[Row]) -> str:
    """``summary.csv``: one line per row, the columns :data:`CSV_FIELDS`."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        writer.writerow(asdict(row))
    return buffer.getvalue()
