"""The summary's text and files: verdict lines, and what write_summary writes."""

from __future__ import annotations

import json

from seglit.run_folder import (
    CLASS_HEATMAP,
    MIOU_PLOT,
    SUMMARY_CSV,
    SUMMARY_JSON,
    SUMMARY_MD,
)
from seglit.summary import Row, summary_text, write_summary
from seglit.summary.stats import ANSWERED, INCONCLUSIVE, NO_LARGER_EFFECT
from seglit.summary.tables import CSV_FIELDS, markdown_table, verdict_lines


def test_verdict_lines_say_what_each_row_answers():
    rows = [
        {"variant": "a", "baseline": True, "verdict": None},
        {"variant": "b", "delta": 0.05, "delta_ci_low": 0.03, "delta_ci_high": 0.07,
         "mde": 0.028, "seeds_needed": 0.9, "verdict": ANSWERED},
        {"variant": "c", "delta": 0.002, "delta_ci_low": -0.015, "delta_ci_high": 0.019,
         "mde": 0.028, "seeds_needed": 588.0, "verdict": NO_LARGER_EFFECT},
        {"variant": "d", "delta": 0.01, "delta_ci_low": -0.01, "delta_ci_high": 0.03,
         "mde": 0.028, "seeds_needed": 23.5, "verdict": INCONCLUSIVE},
    ]  # fmt: skip
    lines = verdict_lines(rows)
    assert lines[0].startswith("b: answered (Δ +0.0500 [+0.0300, +0.0700]")
    assert lines[1].startswith("c: no effect larger than 0.0280")
    assert lines[2].startswith("d: inconclusive: about 24 seeds needed")


def _row(variant: str, baseline: bool = False, **values) -> Row:
    return Row(variant=variant, status="finished", runs=2, finished=2, baseline=baseline, **values)


def test_markdown_table_shows_seed_spread_and_unpaired_intervals():
    rows = [
        _row("sum", baseline=True, mIoU_mean=0.6, mIoU_std=0.1414),
        _row("concat", mIoU_mean=0.7, delta=0.1, delta_ci_low=0.05, delta_ci_high=0.15,
             delta_ci_seeds="unpaired"),
        Row(variant="none", status="failed", runs=2),
    ]  # fmt: skip
    lines = markdown_table(rows).splitlines()
    assert lines[2].startswith("| sum | finished | 0.6000 ± 0.1414 | baseline |")
    assert "| +0.1000 [+0.0500, +0.1500] (seeds unpaired) |" in lines[3]
    assert lines[4].startswith("| none | failed (0/2) | - | - |")


def test_write_summary_returns_every_file_it_wrote(tmp_path):
    rows = [_row("sum", baseline=True, mIoU_mean=0.6), _row("concat", mIoU_mean=0.7, delta=0.1)]
    files = write_summary(tmp_path, "r", rows)
    assert [f.name for f in files] == [
        SUMMARY_MD,
        SUMMARY_CSV,
        SUMMARY_JSON,
        MIOU_PLOT,
        CLASS_HEATMAP,
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f.name for f in files)
    assert files[0].read_text() == f"# r\n\n{summary_text(rows)}\n"
    assert files[1].read_text().splitlines()[0] == ",".join(CSV_FIELDS)
    assert [r["variant"] for r in json.loads(files[2].read_text())["rows"]] == ["sum", "concat"]
