"""The runner under faults: a second runner, a full disk, damaged results, no network.

Each test provokes the fault for real (a second process, a file-size limit on the processes,
bytes written over a file, a closed port) and checks what the user sees and what is kept.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time

import numpy as np
import pytest
from PIL import Image

UNET_BIG = {"class_path": "seglit.models.UNet", "init_args": {"base_width": 16, "depth": 4}}


@contextlib.contextmanager
def a_runner_training(tmp_path, write_recipe, start_fit):
    """``with a_runner_training(...) as (recipe, out, run):`` a first runner is training the
    tiny recipe's one variant (60 epochs) in its own session; killed with it on exit."""
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
        yield recipe, out, run
        assert first.is_alive()
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.join()


def test_a_second_runner_leaves_a_variant_being_trained_alone(
    tmp_path, write_recipe, run_fit, start_fit
):
    with a_runner_training(tmp_path, write_recipe, start_fit) as (recipe, out, run):
        second = run_fit(recipe, "--out", out, cwd=tmp_path)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "sum: being trained by another process right now; skipped" in second.stdout
    assert "| sum | partial" in second.stdout or "| sum | pending" in second.stdout
    log = (run / "train.log").read_text()
    assert log.count("$ seglit fit") == 1  # one process trained it: no interleaved log
    assert not list((run / "checkpoints").glob("*-v1.ckpt"))


def test_a_second_runner_with_another_config_says_so_and_what_to_do(
    tmp_path, write_recipe, run_fit, start_fit
):
    with a_runner_training(tmp_path, write_recipe, start_fit) as (recipe, out, run):
        seconds = [
            run_fit(recipe, "--out", out, "--trainer.max_epochs=61", *extra, cwd=tmp_path)
            for extra in ([], ["--rerun-changed"])
        ]
    for second in seconds:
        assert second.returncode == 2, second.stdout + second.stderr
        busy = f"{run} is being trained right now by another process with another config"
        assert busy in second.stderr, second.stderr
        assert "trainer.max_epochs: 60 -> 61" in second.stderr
        assert "wait for it to finish, or use another --out for this configuration" in second.stderr
    assert not (out / "tiny_skip" / "_archive").exists()  # a running variant is never moved


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
    assert line.split(": FAILED (exit 1) after ")[1].split(": ", 1)[1] == (
        "cannot write the run's files (the disk is full or a size limit hit): "
        f"OSError: [Errno 27] File too large; see {run / 'train.log'}"
    )  # one clear line: no torch internals after it
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


def _finished_variant(tmp_path, write_recipe, run_fit):
    """A one-variant tiny recipe trained to the end: ``(recipe, out, run folder, metrics)``."""
    recipe = write_recipe(tmp_path, ablation={"model.net.init_args.fusion": ["sum"]})
    out = tmp_path / "runs"
    run = out / "tiny_skip" / "sum"
    assert run_fit(recipe, "--out", out, cwd=tmp_path).returncode == 0
    return recipe, out, run, json.loads((run / "metrics.json").read_text())


def test_a_damaged_metrics_file_is_kept_aside_and_restored_not_retrained(
    tmp_path, write_recipe, run_fit
):
    recipe, out, run, original = _finished_variant(tmp_path, write_recipe, run_fit)
    (run / "metrics.json").write_text('{"status": "fini')  # garbled
    again = run_fit(recipe, "--out", out, cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "restored from checkpoints/final_metrics.json" in again.stdout
    assert "sum: finished earlier, skipped" in again.stdout
    assert json.loads((run / "metrics.json").read_text()) == original  # nothing recomputed
    (aside,) = run.glob("metrics.json.unreadable-*")
    assert aside.read_text() == '{"status": "fini'  # the damaged file is kept, not overwritten


@pytest.mark.parametrize("endpoint", ["closed", "silent"])
def test_wandb_online_without_network_goes_offline_once_without_waiting(
    tmp_path, write_recipe, run_fit, endpoint
):
    import socket

    silent = socket.socket()  # accepts connections (the kernel's backlog), never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    port = silent.getsockname()[1] if endpoint == "silent" else 9  # 9: refused at once
    recipe = write_recipe(
        tmp_path,
        ablation={"model.net.init_args.fusion": ["sum", "concat"]},
        trainer={"accelerator": "cpu", "max_epochs": 1, "enable_progress_bar": False,
                 "enable_model_summary": False},
    )  # fmt: skip
    env = {
        "WANDB_MODE": "",
        "WANDB_API_KEY": "0" * 40,  # credentials: "auto" would go online
        "WANDB_BASE_URL": f"http://127.0.0.1:{port}",
    }
    start = time.monotonic()
    try:
        result = run_fit(recipe, "--out", tmp_path / "runs", cwd=tmp_path, env=env)
    finally:
        silent.close()
    elapsed = time.monotonic() - start
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count("W&B is unreachable") == 1
    reason = "no answer within 3 s" if endpoint == "silent" else "Connection refused"
    assert f"W&B is unreachable (http://127.0.0.1:{port}: {reason})" in result.stdout
    assert elapsed < 150, f"took {elapsed:.0f}s: W&B waited for the network"
    from seglit.wandb.offline import find_offline_runs

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


# ------------------------------------------------------------- values named before training


def test_dry_run_lists_every_variant_then_every_problem(tmp_path, write_recipe, run_fit):
    recipe = write_recipe(tmp_path)
    bad = ["--progress-interval", "0", "--model.optimizer.init_args.lr=0",
           "--trainer.max_epochs=3", "--trainer.check_val_every_n_epoch=5",
           "--data.init_args.batch_size=-4", "--model.optimizer.init_args.momentum=1"]  # fmt: skip
    result = run_fit(recipe, "--dry-run", *bad, cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        "sum: model.net.init_args.fusion=sum",
        "concat: model.net.init_args.fusion=concat",
    ]
    assert result.stderr.splitlines() == [
        "seglit.fit: error: 5 problems found; nothing was trained:",
        "  --progress-interval: 0.0; expected seconds > 0 between progress lines",
        "  variants sum, concat: model.optimizer.init_args.lr: 0; expected a learning rate > 0 "
        "(nothing would learn)",
        "  variants sum, concat: model.optimizer.init_args.momentum: 1; expected a value in [0, 1)",
        "  variants sum, concat: trainer.max_epochs: 3 is less than "
        "trainer.check_val_every_n_epoch: 5; no validation would run, so no best epoch: set "
        "max_epochs >= 5 or check_val_every_n_epoch <= 3",
        "  variants sum, concat: data.init_args.batch_size: -4; expected >= 1 image per batch",
    ]


def test_bad_values_stop_the_runner_before_any_variant_starts(tmp_path, write_recipe, run_fit):
    recipe = write_recipe(tmp_path)
    out = tmp_path / "runs"
    result = run_fit(recipe, "--out", out, "--trainer.max_epochs=0", cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "variants sum, concat: trainer.max_epochs: 0; expected >= 1" in result.stderr
    assert not (out / "tiny_skip").exists()  # nothing started, nothing recorded


@pytest.mark.parametrize(
    ("where", "key", "close"),
    [("recipe", "num_trian", "num_train"), ("cli", "crop_sise", "crop_size")],
)
def test_a_typo_under_data_init_args_is_named(tmp_path, write_recipe, run_fit, where, key, close):
    import yaml

    recipe = write_recipe(tmp_path)
    args = []
    if where == "recipe":
        raw = yaml.safe_load(recipe.read_text())
        raw["data"]["init_args"][key] = 3
        recipe.write_text(yaml.safe_dump(raw))
    else:
        args = [f"--data.init_args.{key}=3"]
    result = run_fit(recipe, "--dry-run", *args, cwd=tmp_path)
    assert result.returncode == 2
    assert (
        f"data.init_args: key {key!r} is not accepted by seglit.data.SyntheticVOCDataModule "
        f"(did you mean {close!r}?)" in result.stderr
    ), result.stderr


def test_a_single_run_without_a_validation_is_not_recorded_as_finished(tmp_path, make_fit_config):
    import subprocess
    import sys

    import yaml

    run = tmp_path / "run"
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(make_fit_config(run, check_val_every_n_epoch=5)))
    seglit = [sys.executable, "-m", "seglit", "fit", "--config", str(config)]
    before = subprocess.run([*seglit, "--trainer.max_epochs=2"], capture_output=True, text=True)
    assert before.returncode == 2, before.stderr  # known up front: refused before work
    assert before.stderr.strip().splitlines()[-1] == (
        "seglit: error: trainer.max_epochs: 2 is less than trainer.check_val_every_n_epoch: 5; "
        "no validation would run, so no best epoch: set max_epochs >= 5 or "
        "check_val_every_n_epoch <= 2"
    )
    assert not (run / "metrics.json").exists()
    # stopped by max_steps before the epoch's end, where the count up front is uncertain (a
    # fraction of the train batches): no validation, found at the end
    ended = subprocess.run(
        [*seglit, "--trainer.check_val_every_n_epoch=1", "--trainer.max_steps=1",
         "--trainer.limit_train_batches=0.5"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert ended.returncode == 1, ended.stderr
    assert "seglit: error: the run ended after 1 epoch(s) without a validation" in ended.stderr
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "failed" and "without a validation" in metrics["error"]


# ------------------------------------------------------------------ the runner owns its children


def _children(pid: int) -> list[int]:
    found = []
    for stat in os.listdir("/proc"):
        if stat.isdigit():
            try:
                fields = open(f"/proc/{stat}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(stat))
    return found


def _alive(pid: int) -> bool:
    try:
        state = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_a_killed_runner_stops_its_variant_and_a_rerun_resumes_it(
    tmp_path, write_recipe, run_fit, start_fit, signum
):
    # a SIGINT is forwarded after 2 s (a Ctrl-C reaches the variants by itself): enough
    # epochs that the variant cannot finish in that time on an idle machine (60 epochs of
    # this tiny net once did), few enough that the rerun finishes them soon
    epochs = 300 if signum == signal.SIGINT else 6
    recipe = write_recipe(
        tmp_path, ablation={"model.net.init_args.fusion": ["sum"]}, trainer={
            "accelerator": "cpu", "max_epochs": epochs, "enable_progress_bar": False,
            "enable_model_summary": False, "logger": False,
        },
    )  # fmt: skip
    out = tmp_path / "runs"
    runner, stdout, _ = start_fit(recipe, "--out", out, cwd=tmp_path)
    run = out / "tiny_skip" / "sum"
    deadline = time.time() + 300
    while not list((run / "checkpoints").glob("last.ckpt")) and time.time() < deadline:
        time.sleep(0.1)  # an epoch is done: there is something to resume
    (variant,) = _children(runner.pid)
    os.kill(runner.pid, signum)  # the runner's pid alone, as a scheduler or a closed terminal
    runner.join(60)
    deadline = time.time() + 60
    while _alive(variant) and time.time() < deadline:
        time.sleep(0.1)
    assert not _alive(variant), "the variant outlived its runner"
    if signum != signal.SIGKILL:  # forwarded: the variant stopped, the runner said so
        assert runner.exitcode == 128 + signum
        name = signal.Signals(signum).name
        assert f"interrupted ({name}): rerun the same command" in stdout.read_text()
    again = run_fit(recipe, "--out", out, cwd=tmp_path)  # at once: the lock is free
    assert again.returncode == 0, again.stdout + again.stderr
    assert "[1/1] sum: resuming" in again.stdout
    assert json.loads((run / "metrics.json").read_text())["epochs"] == epochs


def test_a_key_stated_twice_in_a_recipe_is_refused_with_both_lines(tmp_path, write_recipe, run_fit):
    recipe = write_recipe(tmp_path)
    text = recipe.read_text().replace("  max_epochs: 2\n", "  max_epochs: 2\n  max_epochs: 5\n")
    recipe.write_text(text)
    first = text.splitlines().index("  max_epochs: 2") + 1
    result = run_fit(recipe, "--dry-run", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"seglit.fit: error: {recipe}: duplicate key 'max_epochs' on lines {first} and "
        f"{first + 1} (only one may stay)"
    )


def test_a_key_twice_in_one_flow_mapping_is_refused_too():
    from seglit.recipe import RecipeError, load_yaml

    with pytest.raises(RecipeError, match=r"duplicate key 'max_epochs' on line 1 \(twice\)"):
        load_yaml("trainer: {max_epochs: 2, max_epochs: 5}\n", "r.yaml")


def test_merge_keys_may_still_be_overridden():
    from seglit.recipe import load_yaml

    text = "a: &base {x: 1, y: 2}\nb: {<<: *base, y: 3}\n"
    assert load_yaml(text) == {"a": {"x": 1, "y": 2}, "b": {"x": 1, "y": 3}}


def test_a_record_rebuilt_from_a_checkpoint_says_so_and_marks_what_it_cannot_know(
    tmp_path, write_recipe, run_fit
):
    recipe, out, run, original = _finished_variant(tmp_path, write_recipe, run_fit)
    assert original["train_images_per_sec"] and original["peak_mem_mb"]
    (run / "metrics.json").unlink()
    (run / "checkpoints" / "final_metrics.json").unlink()
    again = run_fit(recipe, "--out", out, cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert (
        "sum: its metrics files were gone: the record was rebuilt from checkpoints/last.ckpt, "
        "with train_images_per_sec, peak_mem_mb unknown (not re-measured)" in again.stdout
    )
    rebuilt = json.loads((run / "metrics.json").read_text())
    assert rebuilt["restored"] == {
        "from_checkpoint": "last.ckpt",
        "unknown": ["train_images_per_sec", "peak_mem_mb"],
    }
    assert rebuilt["train_images_per_sec"] is None and rebuilt["peak_mem_mb"] is None
    assert rebuilt["best"] == original["best"] and rebuilt["history"] == original["history"]


def test_a_resume_from_the_best_checkpoint_leaves_one_best_checkpoint(
    tmp_path, write_recipe, run_fit, start_fit
):
    recipe = write_recipe(
        tmp_path, ablation={"model.net.init_args.fusion": ["sum"]}, trainer={
            "accelerator": "cpu", "max_epochs": 8, "enable_progress_bar": False,
            "enable_model_summary": False, "logger": False,
        },
    )  # fmt: skip
    out = tmp_path / "runs"
    checkpoints = out / "tiny_skip" / "sum" / "checkpoints"
    first, _, _ = start_fit(recipe, "--out", out, cwd=tmp_path, session=True)
    deadline = time.time() + 300
    while time.time() < deadline and first.is_alive():
        if list(checkpoints.glob("best-*.ckpt")) and (checkpoints / "last.ckpt").exists():
            break
        time.sleep(0.05)
    os.killpg(first.pid, signal.SIGKILL)  # killed mid-run...
    first.join()
    (checkpoints / "last.ckpt").write_bytes(b"damaged")  # ...and its last.ckpt lost
    again = run_fit(recipe, "--out", out, cwd=tmp_path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "sum: resuming from best-epoch" in again.stdout
    bests = [p.name for p in checkpoints.glob("best-*.ckpt")]
    assert len(bests) == 1, bests  # the one it resumed from is gone once a newer best exists
    best = json.loads((out / "tiny_skip" / "sum" / "metrics.json").read_text())["best"]
    assert bests[0] == f"best-epoch{best['epoch']:03d}-step{best['step']:06d}.ckpt"


def test_a_dry_run_shows_each_variants_labelled_axis_values(tmp_path, write_recipe, run_fit):
    unet = {"class_path": "seglit.models.UNet", "init_args": {"base_width": 4, "depth": 2}}
    axis = {
        f"unet-{fusion}": {**unet, "init_args": {**unet["init_args"], "fusion": fusion}}
        for fusion in ("sum", "concat")
    }
    recipe = write_recipe(tmp_path, ablation={"model.net": axis, "seeds": [0]})
    result = run_fit(recipe, "--dry-run", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[:2] == [
        "unet-sum-s0: seed=0 model.net=unet-sum (UNet)",  # the label tells them apart
        "unet-concat-s0: seed=0 model.net=unet-concat (UNet)",
    ]
