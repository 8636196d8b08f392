"""Fingerprints: everything that decides a result, and nothing else."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from seglit.fingerprint import Fingerprint, config_differences, fingerprint

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
        "import json, sys; from seglit.fingerprint import fingerprint; "
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


def test_fingerprint_record_round_trips():
    fp = Fingerprint.of(CONFIG)
    record = fp.to_json()
    assert list(record) == ["fingerprint", "seglit_version", "config"]
    assert Fingerprint.from_json(json.loads(json.dumps(record))) == fp
    assert Fingerprint.from_json({"config": {}}) is None
