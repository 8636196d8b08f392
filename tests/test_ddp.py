"""Real DDP on 2 CPU processes (gloo) through the real CLI: every val image scored once."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml


def _seglit(*args: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "seglit", *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
    )


@pytest.mark.timeout(600)
def test_ddp_two_cpu_processes_score_the_odd_val_set_like_one(tmp_path, make_fit_config):
    train_dir = tmp_path / "train"
    config = make_fit_config(train_dir)
    (tmp_path / "fit.yaml").write_text(yaml.safe_dump(config))
    fit = _seglit("fit", "--config", str(tmp_path / "fit.yaml"), cwd=tmp_path)
    assert fit.returncode == 0, fit.stderr[-3000:]
    ckpt = train_dir / "checkpoints" / "last.ckpt"

    results = {}
    for devices in (1, 2):
        out = tmp_path / f"val{devices}"
        cfg = make_fit_config(out, devices=devices, strategy="ddp" if devices > 1 else "auto")
        path = tmp_path / f"val{devices}.yaml"
        path.write_text(yaml.safe_dump(cfg))
        run = _seglit("validate", "--config", str(path), "--ckpt_path", str(ckpt), cwd=tmp_path)
        assert run.returncode == 0, run.stderr[-3000:]
        results[devices] = json.loads((out / "validate_metrics.json").read_text())

    one, two = results[1], results[2]
    assert one["num_images"] == two["num_images"] == 5  # odd: 3 images on rank 0, 2 on rank 1
    assert sorted(two["image_names"]) == sorted(set(two["image_names"]))  # none scored twice
    assert two["confmat"] == one["confmat"]
    assert two["mIoU"] == one["mIoU"]
