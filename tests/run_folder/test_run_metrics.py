"""metrics.json: the typed record round-trips the exact JSON, reads old files, is restored."""

from __future__ import annotations

import json
import math
import os

import pytest

from seglit.run_folder import (
    FAILED,
    FINISHED,
    RunMetrics,
    failure_record,
    read_metrics,
    restore_metrics,
    write_metrics,
    write_metrics_backup,
)

BEST = {"epoch": 2, "step": 12, "mIoU": 0.5, "acc": 0.9, "IoU": {"bg": 0.6}, "confmat": [[1]]}

FINISHED_RECORD = {
    "status": "finished",
    "fingerprint": "0123456789abcdef",
    "best": BEST,
    "history": [BEST],
    "epochs": 3,
    "steps": 12,
    "params": 1234,
    "gflops": 0.5,
    "wall_time_s": 10.0,
    "train_images_per_sec": 5.0,
    "peak_mem_mb": None,
}
"""A finished run's metrics.json, keys in the order the callback has always written them."""

RESTORED_RECORD = {
    **FINISHED_RECORD,
    "train_images_per_sec": None,
    "restored": {"from_checkpoint": "last.ckpt", "unknown": ["train_images_per_sec"]},
}

FAILED_RECORD = {
    "status": "failed",
    "fingerprint": "0123456789abcdef",
    "returncode": 1,
    "error": "boom",
    "log_tail": ["line"],
}


@pytest.mark.parametrize("record", [FINISHED_RECORD, RESTORED_RECORD, FAILED_RECORD])
def test_the_record_round_trips_the_exact_json(tmp_path, record):
    (tmp_path / "metrics.json").write_text(json.dumps(record, indent=2) + "\n")
    before = (tmp_path / "metrics.json").read_text()
    metrics = read_metrics(tmp_path)
    assert metrics.to_json() == record and list(metrics.to_json()) == list(record)
    write_metrics(tmp_path, metrics)
    assert (tmp_path / "metrics.json").read_text() == before  # byte for byte


def test_a_failure_record_holds_the_failure_keys_only():
    record = failure_record("0123456789abcdef", 1, "boom", ["line"])
    assert record.status == FAILED and record.to_json() == FAILED_RECORD


def test_old_files_are_read_and_unknown_keys_kept():
    old = {"status": "finished", "best": {"mIoU": 0.5}, "history": None, "from_the_future": 1}
    metrics = RunMetrics.from_json(old)
    assert metrics.fingerprint is None and metrics.history == [] and metrics.params is None
    assert metrics.best_miou == 0.5 and metrics.to_json()["from_the_future"] == 1
    assert math.isnan(RunMetrics(FINISHED).best_miou)


def test_a_file_without_a_status_is_named(tmp_path):
    (tmp_path / "metrics.json").write_text('{"best": {}}')
    with pytest.raises(ValueError, match="metrics.json holds no run status"):
        read_metrics(tmp_path)
    (tmp_path / "metrics.json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="metrics.json holds no run status"):
        read_metrics(tmp_path)


def test_a_lost_metrics_file_is_restored_from_its_backup_only_under_its_fingerprint(tmp_path):
    record = RunMetrics.from_json(FINISHED_RECORD)
    write_metrics(tmp_path, record)
    write_metrics_backup(tmp_path, record)
    os.remove(tmp_path / "metrics.json")
    assert restore_metrics(tmp_path, "another-config") == []  # never another config's
    assert not (tmp_path / "metrics.json").exists()
    assert restore_metrics(tmp_path, record.fingerprint) == [
        "metrics.json was missing or unreadable: restored from checkpoints/final_metrics.json"
    ]
    assert read_metrics(tmp_path) == record
    assert restore_metrics(tmp_path, record.fingerprint) == []  # nothing to do


def test_an_unreadable_metrics_file_is_set_aside_not_overwritten(tmp_path):
    (tmp_path / "metrics.json").write_text("{garbled")
    notes = restore_metrics(tmp_path, "0123456789abcdef")
    assert "set aside as metrics.json.unreadable-" in notes[0]
    assert "no backup of metrics.json" in notes[1]
    assert [p.name.startswith("metrics.json.unreadable-") for p in tmp_path.iterdir()] == [True]
