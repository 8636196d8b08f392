"""The recipe runner: dry runs, validation errors, and a real end-to-end ablation."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from seglit.fit import main, parse_overrides
from seglit.tracking import find_offline_runs, read_offline_run

REPO = Path(__file__).resolve().parents[1]


def write_recipe(path: Path, data_root: Path, **extra) -> Path:
    recipe = {
        "name": "tiny_skip",
        "ablation": {"model.net.init_args.fusion": ["sum", "concat"], "seeds": [0]},
        "seed_everything": 0,
        "trainer": {
            "accelerator": "cpu",
            "max_epochs": 2,
            "check_val_every_n_epoch": 1,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "log_every_n_steps": 1,
        },
        "model": {
            "net": {"class_path": "seglit.models.UNet", "init_args": {"base_width": 4, "depth": 2}},
            "optimizer": {
                "class_path": "torch.optim.SGD",
                "init_args": {"lr": 0.05, "momentum": 0.9, "weight_decay": 0.0001},
            },
        },
        "data": {
            "class_path": "seglit.data.SyntheticVOCDataModule",
            "init_args": {
                "root": str(data_root),
                "num_train": 16,
                "num_val": 5,
                "batch_size": 8,
                "crop_size": 48,
                "num_workers": 0,
            },
        },
        **extra,
    }
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def test_parse_overrides():
    assert parse_overrides(["--trainer.max_epochs=2", "--model.net.init_args.fusion", "sum"]) == {
        "trainer.max_epochs": 2,
        "model.net.init_args.fusion": "sum",
    }


def test_dry_run_lists_and_validates_variants(tmp_path, synthetic_root, capsys):
    recipe = write_recipe(tmp_path / "r.yaml", synthetic_root)
    assert main([str(recipe), "--dry-run", "--out", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "sum-s0: seed=0 model.net.init_args.fusion=sum"
    assert out[1] == "concat-s0: seed=0 model.net.init_args.fusion=concat"
    assert "2 variant(s) valid" in out[2]
    assert not (tmp_path / "runs").exists()  # a dry run writes nothing


def test_dry_run_with_variant_selects_one(tmp_path, synthetic_root, capsys):
    recipe = write_recipe(tmp_path / "r.yaml", synthetic_root)
    assert main([str(recipe), "--dry-run", "--variant", "concat-s0"]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("concat-s0:")
    assert main([str(recipe), "--dry-run", "--variant", "nope"]) == 2
    assert "unknown variant(s) ['nope']" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"ablation": {"model.net.init_args.fusoin": ["sum"]}}, "fusoin"),
        ({"trainer": {"max_epoch": 1}}, "max_epoch"),
        (
            {
                "data": {
                    "class_path": "seglit.data.SyntheticVOCDataModule",
                    "init_args": {"batch_size": "eight"},
                }
            },
            "batch_size",
        ),
    ],
)
def test_typo_in_recipe_is_an_error_naming_the_key(
    tmp_path, synthetic_root, capsys, change, message
):
    recipe = write_recipe(tmp_path / "r.yaml", synthetic_root, **change)
    assert main([str(recipe), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "error" in err and message in err


@pytest.mark.parametrize(
    ("override", "message"),
    [("--trainer.max_epoch=1", "max_epoch"), ("--trainer.max_epochs=abc", "max_epochs")],
)
def test_typo_on_command_line_is_an_error(tmp_path, synthetic_root, capsys, override, message):
    recipe = write_recipe(tmp_path / "r.yaml", synthetic_root)
    assert main([str(recipe), "--dry-run", override]) == 2
    assert message in capsys.readouterr().err


def _tree_digest(folder: Path) -> dict[str, str]:
    """SHA-256 of every file, except W&B's own service logs: its background process may
    still append a shutdown line after the training process has exited."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not (p.parent.name == "logs" and p.name.startswith("debug"))
    }


def test_end_to_end_ablation_then_rerun_skips_finished(tmp_path, synthetic_root):
    recipe = write_recipe(tmp_path / "r.yaml", synthetic_root)
    out = tmp_path / "runs"
    cmd = [sys.executable, "-m", "seglit.fit", str(recipe), "--out", str(out)]
    first = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=400)
    assert first.returncode == 0, first.stdout + first.stderr
    recipe_dir = out / "tiny_skip"
    for name in ("sum-s0", "concat-s0"):
        run = recipe_dir / name
        assert (run / "config.yaml").is_file()
        assert (run / "checkpoints" / "last.ckpt").is_file()
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["status"] == "finished"
        assert 0.0 <= metrics["best"]["mIoU"] <= 1.0
        assert len(metrics["history"]) == 2 and metrics["params"] > 0
        # The variant's config reproduces it through the Lightning CLI.
        config = yaml.safe_load((run / "config.yaml").read_text())
        assert config["model"]["net"]["init_args"]["fusion"] == name.split("-")[0]
        assert config["trainer"]["default_root_dir"] == str(run)
        # W&B ran offline; the run file on disk holds the group, the name and the mIoU history.
        wandb_run = read_offline_run(find_offline_runs(run)[0], timeout_s=30)
        assert wandb_run.group == "tiny_skip" and wandb_run.name == name
        assert "fusion=" + name.split("-")[0] in wandb_run.tags
        assert wandb_run.metric("val/mIoU") == pytest.approx(
            [h["mIoU"] for h in metrics["history"]]
        )
        assert wandb_run.config["model"]["net"]["init_args"]["fusion"] == name.split("-")[0]
        # Media: sample images with prediction/ground-truth masks, IoU table, confusion matrix.
        logged = {key for row in wandb_run.history for key in row}
        assert {"val/samples/_type", "val/per_class_iou/_type"} <= logged
        assert any(k.startswith("val/confusion_matrix") for k in logged)
        masks = next(
            r["val/samples/all_masks"] for r in wandb_run.history if "val/samples/all_masks" in r
        )
        assert {"prediction", "ground_truth"} <= set(masks[0])
        files_dir = find_offline_runs(run)[0].parent / "files"
        assert any(files_dir.rglob("*.mask.png")) and any(files_dir.rglob("*.table.json"))
    summary = json.loads((recipe_dir / "summary.json").read_text())
    assert [r["variant"] for r in summary["rows"]] == ["sum", "concat"]
    assert all(r["status"] == "finished" for r in summary["rows"])
    assert (recipe_dir / "summary.md").read_text().count("\n| ") >= 3
    assert (recipe_dir / "summary.csv").read_text().startswith("variant,status")
    assert "| sum | finished |" in first.stdout
    assert (recipe_dir / "summary_miou.png").stat().st_size > 1000
    summary_run = read_offline_run(find_offline_runs(recipe_dir / "_summary")[0], timeout_s=30)
    assert (summary_run.group, summary_run.job_type) == ("tiny_skip", "summary")
    assert any("summary/table/_type" in row for row in summary_run.history)
    assert "wandb sync" in first.stdout

    before = {n: _tree_digest(recipe_dir / n) for n in ("sum-s0", "concat-s0")}
    second = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=200)
    assert second.returncode == 0, second.stdout + second.stderr
    assert second.stdout.count("finished earlier, skipped") == 2
    assert {n: _tree_digest(recipe_dir / n) for n in before} == before


def test_changed_recipe_does_not_overwrite_existing_variant(tmp_path, synthetic_root, capsys):
    recipe = write_recipe(tmp_path / "r.yaml", synthetic_root)
    out = tmp_path / "runs"
    run = out / "tiny_skip" / "sum-s0"
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump({"trainer": {"max_epochs": 99}}))
    assert main([str(recipe), "--out", str(out), "--variant", "sum-s0"]) == 2
    assert "holds a different config" in capsys.readouterr().err
    assert yaml.safe_load((run / "config.yaml").read_text()) == {"trainer": {"max_epochs": 99}}


def test_export_sweep_round_trips_to_the_same_variants(tmp_path, synthetic_root, capsys):
    recipe = write_recipe(tmp_path / "r.yaml", synthetic_root)
    sweep_file = tmp_path / "sweep.yaml"
    argv = [str(recipe), "--out", str(tmp_path / "o"), "--trainer.max_epochs=1"]
    assert main([*argv, "--export-sweep", str(sweep_file)]) == 0
    sweep = yaml.safe_load(sweep_file.read_text())
    assert sweep["method"] == "grid"
    assert sweep["parameters"]["variant"]["values"] == ["sum-s0", "concat-s0"]
    capsys.readouterr()
    # What an agent runs: the command with ${args} -> --variant=NAME (W&B's substitution).
    command = sweep["command"]
    assert command[:4] == ["${env}", "${interpreter}", "-m", "seglit.fit"]
    for name in sweep["parameters"]["variant"]["values"]:
        agent_argv = [a for a in command[4:] if a != "${args}"] + [f"--variant={name}", "--dry-run"]
        assert main(agent_argv) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[0].startswith(f"{name}:") and "1 variant(s) valid" in lines[1]


def test_a_failing_variant_is_recorded_and_the_others_run_in_parallel(
    tmp_path, synthetic_root, capsys
):
    recipe = write_recipe(
        tmp_path / "r.yaml",
        synthetic_root,
        ablation={"model.optimizer.init_args.lr": {"diverges": float("nan"), "ok": 0.05}},
    )
    out = tmp_path / "runs"
    # --parallel 2: both variants run side by side (on GPUs, one device each).
    assert main([str(recipe), "--out", str(out), "--parallel", "2", "--trainer.max_epochs=1"]) == 1
    printed = capsys.readouterr().out
    assert "diverges: FAILED" in printed and "ok: done" in printed
    failed = json.loads((out / "tiny_skip" / "diverges" / "metrics.json").read_text())
    assert failed["status"] == "failed" and failed["returncode"] != 0
    assert any("training loss is nan" in line for line in failed["log_tail"])
    rows = {
        r["variant"]: r
        for r in json.loads((out / "tiny_skip" / "summary.json").read_text())["rows"]
    }
    assert rows["diverges"]["status"] == "failed" and rows["ok"]["status"] == "finished"
    devices = {
        line.split()[1]
        for name in ("diverges", "ok")
        for line in (out / "tiny_skip" / name / "train.log").read_text().splitlines()
        if line.startswith("$ CUDA_VISIBLE_DEVICES=")
    }
    assert devices == {"CUDA_VISIBLE_DEVICES=0", "CUDA_VISIBLE_DEVICES=1"}


def test_sigkill_mid_variant_then_rerun_resumes_and_keeps_finished_work(tmp_path, synthetic_root):
    import os
    import signal
    import time

    recipe = write_recipe(
        tmp_path / "r.yaml",
        synthetic_root,
        ablation={"trainer.max_epochs": {"short": 1, "long": 6}},
    )
    out = tmp_path / "runs"
    cmd = [sys.executable, "-m", "seglit.fit", str(recipe), "--out", str(out)]
    proc = subprocess.Popen(
        cmd,
        cwd=tmp_path,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    long_ckpt = out / "tiny_skip" / "long" / "checkpoints" / "last.ckpt"
    deadline = time.time() + 300
    while not long_ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the runner and its training process
    proc.wait()
    assert long_ckpt.exists(), "the long variant never checkpointed"
    assert not (out / "tiny_skip" / "long" / "metrics.json").exists()
    short_before = _tree_digest(out / "tiny_skip" / "short")
    assert (
        json.loads((out / "tiny_skip" / "short" / "metrics.json").read_text())["status"]
        == "finished"
    )

    rerun = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=400)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "short: finished earlier, skipped" in rerun.stdout
    assert "long: resuming" in rerun.stdout
    assert _tree_digest(out / "tiny_skip" / "short") == short_before
    long_metrics = json.loads((out / "tiny_skip" / "long" / "metrics.json").read_text())
    assert long_metrics["status"] == "finished" and long_metrics["epochs"] == 6
    assert "--ckpt_path" in (out / "tiny_skip" / "long" / "train.log").read_text()
