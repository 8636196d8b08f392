"""The recipe's W&B summary run: its table, plots, one identity updated on every call."""

from __future__ import annotations

import json

from wandb_records import read_offline_run

from seglit.summary import Row
from seglit.wandb.offline import find_offline_runs
from seglit.wandb.summary import log_summary_run, summary_table_rows


def _rows() -> list[Row]:
    return [
        Row(
            variant="unet-sum",
            status="finished",
            runs=2,
            finished=2,
            mIoU_mean=0.5,
            mIoU_std=0.01,
            delta=0.0,
            baseline=True,
            labels={"model.net.init_args.fusion": "sum"},
            per_class_iou={"bg": 0.9, "cat": 0.1},
        ),
        Row(
            variant="unet-concat",
            status="failed",
            runs=2,
            finished=0,
            labels={"model.net.init_args.fusion": "concat"},
        ),
    ]


def test_summary_table_has_fields_axes_and_classes():
    columns, data = summary_table_rows(_rows())
    assert columns[0] == "variant" and "model.net.init_args.fusion" in columns
    assert columns[-2:] == ["IoU/bg", "IoU/cat"]
    assert {"mde", "seeds_needed", "verdict"} <= set(columns)  # the power of each row
    assert data[0][columns.index("mIoU_mean")] == 0.5
    assert data[1][columns.index("mIoU_mean")] is None and data[1][-1] is None


def test_summary_run_is_read_back_from_disk(tmp_path):
    from seglit.summary.plots import plot_class_heatmap, plot_miou

    rows = _rows()
    plots = [plot_miou(rows, tmp_path / "miou.png"), plot_class_heatmap(rows, tmp_path / "iou.png")]
    run_dir = log_summary_run(
        "ablation_x", rows, tmp_path / "ablation_x", mode="offline", plots=plots
    )
    assert run_dir is not None and run_dir.parent == tmp_path / "ablation_x" / "_summary" / "wandb"
    run = read_offline_run(run_dir, timeout_s=30)
    assert (run.group, run.name, run.job_type) == ("ablation_x", "ablation_x-summary", "summary")
    (row,) = run.history
    assert row["summary/table/_type"] == "table-file" and row["summary/table/nrows"] == 2
    assert row["summary/miou/_type"] == "image-file" and row["summary/iou/_type"] == "image-file"
    assert run.summary["mIoU/unet-sum"] == 0.5 and "mIoU/unet-concat" not in run.summary
    table = json.loads((run_dir / "files" / row["summary/table/path"]).read_text())
    assert [r[0] for r in table["data"]] == ["unet-sum", "unet-concat"]
    for key in ("summary/miou/path", "summary/iou/path"):
        assert (run_dir / "files" / row[key]).stat().st_size > 1000


def test_summary_run_disabled_returns_none(tmp_path):
    assert log_summary_run("r", _rows(), tmp_path, mode="disabled") is None


def test_summary_run_keeps_one_identity_across_calls(tmp_path):
    first = log_summary_run("ablation_y", _rows(), tmp_path / "ablation_y", mode="offline")
    second = log_summary_run("ablation_y", _rows(), tmp_path / "ablation_y", mode="offline")
    runs = find_offline_runs(tmp_path / "ablation_y")
    assert len(runs) == 1, "the superseded offline copy must be replaced, not kept"
    ids = {read_offline_run(first if first.exists() else second, timeout_s=30).run_id}
    ids.add(read_offline_run(second, timeout_s=30).run_id)
    assert len(ids) == 1
    assert (tmp_path / "ablation_y" / "_summary" / "run_id").read_text().strip() in ids
