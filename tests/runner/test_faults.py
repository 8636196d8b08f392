"""The runner under faults: a second runner, a full disk, damaged results, no network.

Each test provokes the fault for real (a second process, a file-size limit on the processes,
bytes written over a file, a closed port) and checks what the user sees and what is kept.
"""

from __future__ import annotations

import json
import os
import signal
import time

import numpy as np
import pytest
from PIL import Image

UNET_BIG = {"class_path": "seglit.models.UNet", "init_args": {"base_width": 16, "depth": 4}}


def test_a_second_runner_leaves_a_variant_being_trained_alone(
    tmp_path, write_recipe, run_fit, start_fit
):
    recipe = write_recipe(
        tmp_path, ablation={"model.net.init_args.fusion": ["sum"]}, trainer={
            "accelerator": "cpu", "max_epochs": 60, "enable_progress_bar": False,
            "enable_model_summary": False, "logger": False,
        },
    )  # fmt: skip
    out = tmp_path / "runs"
    first, _, _ = start_fit(recipe, "--out", out, cwd=tmp_path, session=True)
    run = out / "tiny_skip" / "sum"
    try:
        deadline = time.time() + 300
        while not (run / "progress.json").exists() and time.time() < deadline:
            time.sleep(0.1)
        assert first.is_alive(), "the first runner ended before the second started"
        second = run_fit(recipe, "--out", out, cwd=tmp_path)
        assert first.is_alive()
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.join()
    assert second.returncode == 0, second.stdout + second.stderr
    assert "sum: being trained by another process right now; skipped" in second.stdout
    assert "| sum | partial" in second.stdout or "| sum | pending" in second.stdout
    log = (run / "train.log").read_text()
    assert log.count("$ seglit fit") == 1  # one process trained it: no interleaved log
    assert not list((run / "checkpoints").glob("*-v1.ckpt"))


def test_a_full_disk_fails_the_variant_cleanly_and_a_rerun_finishes(
    tmp_path, write_recipe, run_fit
):
    recipe = write_recipe(
        tmp_path,
        ablation={"model.net.init_args.fusion": ["sum"]},
        model={"net": UNET_BIG},
        trainer={"accelerator": "cpu", "max_epochs": 1, "logger": False,
                 "enable_progress_bar": False, "enable_model_summary": False},
    )  # fmt: skip
    out = tmp_path / "runs"
    run = out / "tiny_skip" / "sum"
    full = run_fit(recipe, "--out", out, cwd=tmp_path, limit_file_size=400_000)
    assert full.returncode == 1, full.stdout + full.stderr
    (line,) = [line for line in full.stdout.splitlines() if "sum: FAILED" in line]
    assert "File too large" in line  # the OSError itself, on the console
    assert json.loads((run / "metrics.json").read_text())["status"] == "failed"
    assert (out / "tiny_skip" / "summary.json").is_file()  # the summary is still written
    leftovers = (
        [p.name for p in (run / "checkpoints").iterdir()] if (run / "checkpoints").exists() else []
    )
    assert not [n for n in leftovers if n.endswith(".ckpt")], leftovers  # nothing torn kept

    again = run_fit(recipe, "--out", out, cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    names = sorted(p.name for p in (run / "checkpoints").glob("*.ckpt"))
    assert len(names) == 2 and names[1] == "last.ckpt" and names[0].startswith("best-")


def test_a_damaged_metrics_file_is_kept_aside_and_restored_not_retrained(
    tmp_path, write_recipe, run_fit
):
    recipe = write_recipe(tmp_path, ablation={"model.net.init_args.fusion": ["sum"]})
    out = tmp_path / "runs"
    run = out / "tiny_skip" / "sum"
    assert run_fit(recipe, "--out", out, cwd=tmp_path).returncode == 0
    original = json.loads((run / "metrics.json").read_text())
    (run / "metrics.json").write_text('{"status": "fini')  # garbled (a deleted one: test_artifacts)
    again = run_fit(recipe, "--out", out, cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "restored from checkpoints/final_metrics.json" in again.stdout
    assert "sum: finished earlier, skipped" in again.stdout
    assert json.loads((run / "metrics.json").read_text()) == original  # nothing recomputed
    (aside,) = run.glob("metrics.json.unreadable-*")
    assert aside.read_text() == '{"status": "fini'  # the damaged file is kept, not overwritten


def test_wandb_online_without_network_goes_offline_once_without_waiting(
    tmp_path, write_recipe, run_fit
):
    recipe = write_recipe(
        tmp_path,
        ablation={"model.net.init_args.fusion": ["sum", "concat"]},
        trainer={"accelerator": "cpu", "max_epochs": 1, "enable_progress_bar": False,
                 "enable_model_summary": False},
    )  # fmt: skip
    env = {
        "WANDB_MODE": "",
        "WANDB_API_KEY": "0" * 40,  # credentials: "auto" would go online
        "WANDB_BASE_URL": "http://127.0.0.1:9",  # nothing listens: refused at once
    }
    start = time.monotonic()
    result = run_fit(recipe, "--out", tmp_path / "runs", cwd=tmp_path, env=env)
    elapsed = time.monotonic() - start
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("W&B is unreachable") == 1
    assert elapsed < 150, f"took {elapsed:.0f}s: W&B waited for the network"
    from seglit.wandb_offline import find_offline_runs

    assert len(find_offline_runs(tmp_path / "runs" / "tiny_skip")) == 3  # 2 fits + summary


def test_a_16_bit_mask_is_named_as_such(tmp_path):
    from seglit.data.io import read_label

    path = tmp_path / "mask.png"
    Image.fromarray(np.zeros((4, 4), dtype=np.uint16)).save(path)
    with pytest.raises(ValueError, match=r"mask.png is a 'I;16' .*16/32-bit.*8-bit") as err:
        read_label(path)
    assert "RGB" not in str(err.value)


def test_a_killed_generation_leaves_no_staging_folder_behind(tmp_path):
    from seglit.data import write_synthetic_voc

    dead = tmp_path / ".synthetic-999999-abcd"  # a generation killed mid-way
    (dead / "VOCdevkit").mkdir(parents=True)
    live = tmp_path / f".synthetic-{os.getpid()}-live"  # one in progress: kept
    live.mkdir()
    write_synthetic_voc(tmp_path, num_train=2, num_val=1)
    assert not dead.exists() and live.exists()
