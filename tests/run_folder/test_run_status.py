"""The one definition of a run's status, its recorded fingerprint and later jobs' folders."""

from __future__ import annotations

import os

import pytest

from seglit.fingerprint import Fingerprint
from seglit.run_folder import (
    FAILED,
    FINISHED,
    MISMATCH,
    PARTIAL,
    PENDING,
    RunMetrics,
    failure_record,
    new_output_dir,
    next_version_dir,
    read_fingerprint,
    read_metrics,
    run_status,
    write_fingerprint,
    write_metrics,
)

CONFIG = {"seed_everything": 0, "model": {"net": {"class_path": "seglit.models.UNet"}}}
OTHER = {**CONFIG, "seed_everything": 3}


def test_run_status_agrees_with_what_the_folder_holds(tmp_path):
    fp, other = Fingerprint.of(CONFIG), Fingerprint.of(OTHER)
    run = tmp_path / "run"
    assert run_status(run, fp.digest) == PENDING
    write_fingerprint(run, fp)
    assert read_fingerprint(run) == fp
    assert run_status(run, fp.digest) == PENDING
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.ckpt").write_bytes(b"x")
    assert run_status(run, fp.digest) == PARTIAL
    write_metrics(run, RunMetrics(FINISHED, fp.digest, best={"mIoU": 0.5}))
    assert run_status(run, fp.digest) == FINISHED
    assert run_status(run, other.digest) == MISMATCH  # another config's result
    write_metrics(run, RunMetrics(FINISHED, fp.digest, best=None))
    assert run_status(run, fp.digest) == PARTIAL  # "finished" without a result is not
    write_metrics(run, failure_record(fp.digest, 1, "boom", []))
    assert run_status(run, fp.digest) == FAILED
    (run / "metrics.json").write_text("{garbled")
    assert run_status(run, fp.digest) == PARTIAL
    with pytest.raises(ValueError, match="metrics.json is not valid JSON"):
        read_metrics(run)
    os.remove(run / "fingerprint.json")
    assert read_fingerprint(run) is None
    (run / "metrics.json").write_text('{"status": "finished", "best": {"mIoU": 0.5}}')  # old
    assert run_status(run, fp.digest) == MISMATCH
    os.remove(run / "metrics.json")  # checkpoints nobody recorded a config for: not ours
    assert run_status(run, fp.digest) == MISMATCH
    assert run_status(run, None) == PARTIAL  # (asked without a config: it started)


def test_an_unreadable_fingerprint_file_counts_as_none(tmp_path):
    (tmp_path / "fingerprint.json").write_text("{garbled")
    assert read_fingerprint(tmp_path) is None


def test_next_version_dir_never_reuses_a_folder(tmp_path):
    first = next_version_dir(tmp_path, "validate")
    assert first == tmp_path / "validate" / "version_0"
    first.mkdir(parents=True)
    assert next_version_dir(tmp_path, "validate") == tmp_path / "validate" / "version_1"


def test_a_later_job_writes_to_a_new_folder_and_never_over_files(tmp_path):
    assert new_output_dir(tmp_path, None, "export", KeyError) == tmp_path / "export" / "version_0"
    empty = tmp_path / "empty"
    empty.mkdir()
    assert new_output_dir(tmp_path, str(empty), "export", KeyError) == empty
    (empty / "model.onnx").write_text("x")
    with pytest.raises(KeyError, match="already holds files"):
        new_output_dir(tmp_path, str(empty), "export", KeyError)
