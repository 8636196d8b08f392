"""``--launcher``: the recipe's ``launcher:`` block, the sbatch script of ``--dry-run``, the
tasks (run, requeue) and, without a cluster, the whole launch through submitit's local
executor (tests/launcher/test_slurm_cluster.py runs it on a real SLURM)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from seglit.fit import main
from seglit.recipe import RecipeError
from seglit.runner.launch import Child
from seglit.runner.launcher_block import LauncherSettings
from seglit.runner.slurm import SUBMITTED_FILE, queued_job
from seglit.runner.slurm_task import VariantTask


def test_launcher_block_is_validated_naming_the_key():
    settings = LauncherSettings.from_block(
        {
            "partition": "gpu",
            "account": "lab",
            "time": "1-02:30:00",
            "gpus_per_node": 4,
            "nodes": 2,
            "cpus_per_task": 8,
            "mem": 64,
            "extra": ["--qos=high", "#SBATCH --exclusive"],
            "array_parallelism": 6,
        }  # fmt: skip
    )
    assert settings.time == (24 + 2) * 60 + 30 and settings.mem == "64G"
    assert settings.trainer_overrides() == {
        "trainer.accelerator": "gpu", "trainer.devices": 4, "trainer.num_nodes": 2
    }  # fmt: skip
    parameters = settings.executor_parameters("abl")
    assert parameters["ntasks_per_node"] == 4 and parameters["gpus_per_node"] == 4
    assert parameters["additional_parameters"] == {"qos": "high", "exclusive": True}
    assert LauncherSettings.from_block({"time": "45"}).time == 45
    assert LauncherSettings.from_block({"time": "02:00:00"}).time == 120
    assert LauncherSettings.from_block({}).trainer_overrides() == {}  # local fingerprints
    cases = {
        "gpus": "unknown key launcher.gpus (did you mean 'gpus_per_node'?)",
        "nodes": "launcher.nodes: 0; expected an int >= 1",
        "time": "launcher.time: 'soon'; expected minutes",
        "mem": "launcher.mem: 'lots'; expected a size such as 64G",
        "extra": "launcher.extra: 'qos=high'; expected an sbatch option",
        "partition": "launcher.partition: 3; expected a name",
    }
    values = {"gpus": 4, "nodes": 0, "time": "soon", "mem": "lots", "extra": ["qos=high"],
              "partition": 3}  # fmt: skip
    for key, expected in cases.items():
        with pytest.raises(RecipeError, match="^r.yaml: ") as err:
            LauncherSettings.from_block({key: values[key]}, "r.yaml")
        assert expected in str(err.value)


def test_a_bad_launcher_block_stops_the_command(tmp_path, write_tiny_recipe, capsys):
    recipe = write_tiny_recipe(tmp_path / "r.yaml", launcher={"gpu_per_node": 1})
    assert main([str(recipe), "--dry-run", "--launcher", "slurm"]) == 2
    assert "unknown key launcher.gpu_per_node (did you mean 'gpus_per_node'?)" in (
        capsys.readouterr().err
    )
    recipe = write_tiny_recipe(tmp_path / "r.yaml", launcher="gpu")
    assert main([str(recipe), "--dry-run"]) == 2
    assert "`launcher` must be a mapping" in capsys.readouterr().err


def test_dry_run_prints_the_array_script(tmp_path, write_tiny_recipe, capsys):
    block = {"partition": "gpu", "time": 90, "cpus_per_task": 4, "extra": ["--qos=high"]}
    recipe = write_tiny_recipe(tmp_path / "r.yaml", launcher=block)
    out_dir = tmp_path / "runs"
    assert main([str(recipe), "--dry-run", "--launcher", "slurm", "--out", str(out_dir)]) == 0
    out = capsys.readouterr().out
    assert "sbatch script of the job array (2 tasks: 0=sum, 1=concat)" in out
    for line in ("#SBATCH --array=0-1%2", "#SBATCH --partition=gpu", "#SBATCH --time=90",
                 "#SBATCH --cpus-per-task=4", "#SBATCH --qos=high", "#SBATCH --signal=USR2@90",
                 "-m submitit.core._submit"):  # fmt: skip
        assert line in out, line
    assert "--dependency=afterany:<array job id>" in out
    assert not out_dir.exists()  # a dry run writes nothing


def test_launcher_gpus_enter_the_fingerprint_but_not_in_smoke(tmp_path, write_tiny_recipe):
    from seglit.recipe import load_recipe
    from seglit.runner.launcher_block import launcher_settings

    recipe_path = write_tiny_recipe(tmp_path / "r.yaml", launcher={"gpus_per_node": 2})
    recipe = load_recipe(recipe_path)
    assert launcher_settings(recipe, smoke=False).trainer_overrides()["trainer.devices"] == 2
    assert launcher_settings(recipe, smoke=True).trainer_overrides() == {}
    assert launcher_settings(recipe, smoke="context").trainer_overrides() == {}  # a named smoke


def test_a_smoke_task_asks_for_the_threads_of_a_local_smoke(tmp_path, write_tiny_recipe):
    from seglit.recipe import load_recipe
    from seglit.runner.launcher_block import launcher_settings

    recipe = load_recipe(write_tiny_recipe(tmp_path / "r.yaml"))
    assert launcher_settings(recipe, smoke=True).cpus_per_task == os.cpu_count()
    assert launcher_settings(recipe, smoke=False).cpus_per_task is None  # the cluster's default
    given = launcher_settings(recipe, smoke=True, overrides={"cpus_per_task": 1})
    assert given.cpus_per_task == 1


def test_checkpoint_stops_the_training_and_requeues_a_fresh_task(tmp_path):
    import submitit

    task = VariantTask("v", tmp_path, "abc", {})
    popen = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    task._child = Child("v", tmp_path, popen.pid, time.perf_counter(), popen)
    delayed = task.checkpoint()
    assert popen.poll() is not None  # the training process was stopped
    assert isinstance(delayed, submitit.helpers.DelayedSubmission)
    fresh = delayed.function
    assert isinstance(fresh, VariantTask) and fresh._child is None
    assert (fresh.name, fresh.run_dir, fresh.digest) == ("v", tmp_path.absolute(), "abc")


def test_submitit_local_executor_runs_a_variant_as_the_local_runner(
    tmp_path, write_tiny_recipe, capsys
):
    recipe = write_tiny_recipe(tmp_path / "r.yaml")
    out_dir = tmp_path / "runs"
    argv = [str(recipe), "--out", str(out_dir), "--launcher", "submitit-local",
            "--variant", "concat", "--trainer.max_epochs=1"]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    run = out_dir / "tiny_skip" / "concat"
    assert "submitted 1 variant" in out and "[1/1] concat: done" in out
    assert json.loads((run / "metrics.json").read_text())["status"] == "finished"
    config = yaml.safe_load((run / "config.yaml").read_text())
    init = config["trainer"]["logger"]["init_args"]
    assert (init["group"], init["job_type"]) == ("tiny_skip", "fit")  # as a local run
    assert "summary of" in out and (out_dir / "tiny_skip" / "summary.json").is_file()
    record = json.loads((out_dir / "tiny_skip" / "_slurm" / SUBMITTED_FILE).read_text())
    assert list(record["variants"]) == ["concat"]
    # rerun: finished, so nothing is submitted again
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "[1/1] concat: finished earlier, skipped" in out and "submitted" not in out
    assert "every variant is finished" in out


def test_slurm_launcher_without_sbatch_says_so(tmp_path, write_tiny_recipe, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))
    recipe = write_tiny_recipe(tmp_path / "r.yaml")
    assert main([str(recipe), "--out", str(tmp_path / "runs"), "--launcher", "slurm"]) == 2
    assert "needs SLURM's sbatch and squeue" in capsys.readouterr().err


def test_the_launcher_block_of_cluster_md_is_valid_and_its_error_real():
    text = (Path(__file__).resolve().parents[2] / "docs" / "cluster.md").read_text()
    block = text[text.index("```yaml\nlauncher:") + len("```yaml\n") :]
    block = yaml.safe_load(block[: block.index("```")])["launcher"]
    settings = LauncherSettings.from_block(block)
    assert (settings.gpus_per_node, settings.nodes, settings.time) == (4, 2, 24 * 60)
    with pytest.raises(RecipeError) as err:
        LauncherSettings.from_block({"gpu_per_node": 1}, "recipes/r.yaml")
    assert f"seglit.fit: error: {err.value}" in text


def test_launcher_options_need_a_launcher(tmp_path, write_tiny_recipe, capsys):
    recipe = write_tiny_recipe(tmp_path / "r.yaml")
    assert main([str(recipe), "--dry-run", "--wait", "--launcher.time=30"]) == 2
    assert "--wait --launcher.time: only with --launcher slurm" in capsys.readouterr().err
    argv = [str(recipe), "--dry-run", "--launcher", "slurm", "--launcher.time=30"]
    assert main(argv) == 0  # --launcher.KEY=VALUE overrides the block
    assert "#SBATCH --time=30" in capsys.readouterr().out


def test_only_rank_0_locks_and_records_other_ranks_resume_alike(tmp_path, monkeypatch):
    from filelock import FileLock

    import seglit.runner.launch as launch

    started = []

    def fake_start(name, run_dir, argv, resolved, gpu=None, threads=None):
        started.append(argv)
        popen = subprocess.Popen([sys.executable, "-c", "pass"])
        return Child(name, run_dir, popen.pid, time.perf_counter(), popen)

    monkeypatch.setattr(launch, "start_variant", fake_start)
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(b"x")
    lock = FileLock(str(tmp_path / ".lock"))
    lock.acquire()  # another process trains this variant
    monkeypatch.setenv("SLURM_PROCID", "0")
    assert VariantTask("v", tmp_path, "abc", {})() == "skipped" and started == []
    monkeypatch.setenv("SLURM_PROCID", "1")  # a DDP rank > 0: no lock, same checkpoint
    assert VariantTask("v", tmp_path, "abc", {})() == "finished"
    assert started == [["fit", "--config", str(tmp_path / "config.yaml"),
                        "--ckpt_path", str(tmp_path / "checkpoints" / "last.ckpt")]]  # fmt: skip
    lock.release()


def test_a_job_queued_for_another_config_is_cancelled_not_taken_for_this_one():
    states = {"7": "PENDING", "8": "RUNNING", "9": "COMPLETED"}
    same = {"job": "7", "fingerprint": "abc"}
    assert queued_job(same, "abc", states) == ("7", None)  # this config's job: not resubmitted
    assert queued_job({"job": "8", "fingerprint": "old"}, "abc", states) == (None, "8")
    assert queued_job({"job": "9", "fingerprint": "abc"}, "abc", states) == (None, None)
    assert queued_job(None, "abc", states) == (None, None)
