"""Run files: atomic writes, fingerprints, and the one definition of a run's status."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from seglit.artifacts import (
    FAILED,
    FINISHED,
    MISMATCH,
    PARTIAL,
    PENDING,
    Fingerprint,
    atomic_file,
    atomic_write_text,
    config_differences,
    failure_record,
    fingerprint,
    next_version_dir,
    read_metrics,
    restore_metrics,
    run_status,
    write_metrics,
)

CONFIG = {
    "seed_everything": 0,
    "trainer": {"max_epochs": 8, "logger": {"init_args": {"id": "abc"}}, "devices": 1},
    "model": {"net": {"class_path": "seglit.models.UNet", "init_args": {"fusion": "sum"}}},
    "data": {"class_path": "seglit.data.VOCDataModule", "init_args": {"root": "data/voc"}},
    "checkpoint": {"dirpath": "runs/x/checkpoints"},
    "ckpt_path": None,
}


def _with(config: dict, dotted: str, value) -> dict:
    config = json.loads(json.dumps(config))
    *parents, leaf = dotted.split(".")
    node = config
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    return config


def test_atomic_write_replaces_whole_or_not_at_all(tmp_path):
    path = tmp_path / "metrics.json"
    atomic_write_text(path, "old")
    with pytest.raises(RuntimeError), atomic_file(path) as handle:
        handle.write("half of the new")
        raise RuntimeError("disk full")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]  # no temporary left


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("model.net.init_args.fusion", "concat"),
        ("data.class_path", "seglit.data.SyntheticVOCDataModule"),
        ("data.init_args.root", "data/other"),
        ("data.init_args.train_split", "trainaug"),
        ("seed_everything", 1),
        ("trainer.max_epochs", 9),
        ("trainer.devices", 2),
    ],
)
def test_fingerprint_changes_with_everything_that_decides_a_result(key, value):
    assert fingerprint(_with(CONFIG, key, value)) != fingerprint(CONFIG)
    assert fingerprint(CONFIG, version="0.0.0") != fingerprint(CONFIG)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("trainer.logger.init_args.id", "other-run"),
        ("checkpoint.dirpath", "elsewhere"),
        ("ckpt_path", "runs/x/checkpoints/last.ckpt"),
        ("trainer.enable_progress_bar", False),
        ("data.init_args.num_workers", 8),
        ("model.num_classes", 21),  # linked from the data by the CLI
    ],
)
def test_fingerprint_ignores_where_and_how_a_run_is_written(key, value):
    assert fingerprint(_with(CONFIG, key, value)) == fingerprint(CONFIG)


def test_fingerprint_is_the_same_in_another_process():
    code = (
        "import json, sys; from seglit.artifacts import fingerprint; "
        f"print(fingerprint(json.loads({json.dumps(json.dumps(CONFIG))})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == fingerprint(CONFIG)


def test_config_differences_name_the_keys():
    other = _with(_with(CONFIG, "trainer.max_epochs", 2), "data.init_args.root", "x")
    assert config_differences(CONFIG, other) == [
        "data.init_args.root: 'data/voc' -> 'x'",
        "trainer.max_epochs: 8 -> 2",
    ]


def test_run_status_agrees_with_what_the_folder_holds(tmp_path):
    fp = Fingerprint.of(CONFIG)
    other = Fingerprint.of(_with(CONFIG, "seed_everything", 3))
    run = tmp_path / "run"
    assert run_status(run, fp.digest) == PENDING
    fp.write(run)
    assert run_status(run, fp.digest) == PENDING
    (run / "checkpoints").mkdir()
    (run / "checkpoints" / "last.ckpt").write_bytes(b"x")
    assert run_status(run, fp.digest) == PARTIAL
    write_metrics(run, {"status": FINISHED, "fingerprint": fp.digest, "best": {"mIoU": 0.5}})
    assert run_status(run, fp.digest) == FINISHED
    assert run_status(run, other.digest) == MISMATCH  # another config's result
    write_metrics(run, {"status": FINISHED, "fingerprint": fp.digest, "best": None})
    assert run_status(run, fp.digest) == PARTIAL  # "finished" without a result is not
    write_metrics(run, failure_record(fp.digest, 1, "boom", []))
    assert run_status(run, fp.digest) == FAILED
    (run / "metrics.json").write_text("{garbled")
    assert run_status(run, fp.digest) == PARTIAL
    with pytest.raises(ValueError, match="metrics.json is not valid JSON"):
        read_metrics(run)
    os.remove(run / "fingerprint.json")
    write_metrics(run, {"status": FINISHED, "best": {"mIoU": 0.5}})  # an old, unfingerprinted one
    assert run_status(run, fp.digest) == MISMATCH
    os.remove(run / "metrics.json")  # checkpoints nobody recorded a config for: not ours
    assert run_status(run, fp.digest) == MISMATCH
    assert run_status(run, None) == PARTIAL  # (asked without a config: it started)


def test_a_lost_metrics_file_is_restored_from_its_backup_only_under_its_fingerprint(tmp_path):
    fp = Fingerprint.of(CONFIG)
    record = {"status": FINISHED, "fingerprint": fp.digest, "best": {"mIoU": 0.5}}
    write_metrics(tmp_path, record)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "final_metrics.json").write_text(json.dumps(record))
    os.remove(tmp_path / "metrics.json")
    assert restore_metrics(tmp_path, "another-config") == []  # never another config's
    assert not (tmp_path / "metrics.json").exists()
    assert restore_metrics(tmp_path, fp.digest) == [
        "metrics.json was missing or unreadable: restored from checkpoints/final_metrics.json"
    ]
    assert read_metrics(tmp_path) == record
    assert restore_metrics(tmp_path, fp.digest) == []  # nothing to do


def test_next_version_dir_never_reuses_a_folder(tmp_path):
    first = next_version_dir(tmp_path, "validate")
    assert first == tmp_path / "validate" / "version_0"
    first.mkdir(parents=True)
    assert next_version_dir(tmp_path, "validate") == tmp_path / "validate" / "version_1"


def test_run_files_report_and_runner_planning_import_neither_torch_nor_lightning():
    modules = "seglit.artifacts, seglit.report, seglit.plots, seglit.recipe, seglit.runner"
    code = (
        f"import sys, {modules}\n"
        "print([m for m in ('torch', 'lightning', 'wandb') if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
