"""``--launcher slurm`` on a real single-node SLURM (tests/launcher/local_slurm.py): the
same summary digits as a local run, and a cancelled or preempted task resubmitted or
requeued, resuming from its checkpoint. Skipped where SLURM cannot start."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from pathlib import Path

import yaml

from seglit.fit import main
from seglit.runner.slurm import SLURM_DIR, SUBMITTED_FILE

DIGITS = ("mIoU_mean", "acc", "delta", "delta_ci_low", "delta_ci_high", "per_class_iou")


def _rows(recipe_dir: Path) -> dict[str, dict]:
    rows = json.loads((recipe_dir / "summary.json").read_text())["rows"]
    return {row["variant"]: row for row in rows}


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def _squeue() -> dict[str, str]:
    out = subprocess.run(["squeue", "-h", "-r", "-o", "%i|%T"], capture_output=True, text=True)
    return dict(line.split("|", 1) for line in out.stdout.split())


def test_slurm_ablation_matches_the_local_run(
    slurm_cluster, tmp_path, write_tiny_recipe, capsys, monkeypatch
):
    # one thread in both runs: a run is deterministic for one thread count (each SLURM task
    # has one of the node's two CPUs)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    recipe = write_tiny_recipe(tmp_path / "r.yaml")
    assert main([str(recipe), "--out", str(tmp_path / "local")]) == 0
    capsys.readouterr()
    argv = [str(recipe), "--out", str(tmp_path / "slurm"), "--launcher", "slurm", "--wait"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "submitted 2 variants as job array" in out and "summary job" in out
    assert "[1/2] sum: done" in out and "[2/2] concat: done" in out
    assert "tiny_skip: summary of" in out  # the summary job's table, printed here
    assert "wandb_workspace.json" in out  # the W&B workspace, written by the summary job
    for name in ("sum", "concat"):  # one W&B group, the job type of a local run
        configs = [
            yaml.safe_load((tmp_path / where / "tiny_skip" / name / "config.yaml").read_text())
            for where in ("local", "slurm")
        ]
        runs = [c["trainer"]["logger"]["init_args"] for c in configs]
        assert [(r["group"], r["job_type"]) for r in runs] == [("tiny_skip", "fit")] * 2
    local, slurm = _rows(tmp_path / "local" / "tiny_skip"), _rows(tmp_path / "slurm" / "tiny_skip")
    for name in ("sum", "concat"):
        assert slurm[name]["status"] == "finished"
        assert {k: slurm[name][k] for k in DIGITS} == {k: local[name][k] for k in DIGITS}
    record = json.loads((tmp_path / "slurm" / "tiny_skip" / SLURM_DIR / SUBMITTED_FILE).read_text())
    array = record["variants"]["sum"]["job"].split("_")[0]
    summary = f"JobId={record['summary']} "
    # the scheduler's own log of finished jobs (the summary's line comes once its job ends)
    _wait_for(lambda: summary in slurm_cluster.jobcomp(), 60, "the summary job's end")
    ended = [line for line in slurm_cluster.jobcomp().splitlines() if "JobState=COMPLETED" in line]
    assert sum(f"ArrayJobId={array} " in line for line in ended) == 2
    assert sum(summary in line for line in ended) == 1
    # rerun: everything finished, nothing submitted
    assert main(argv) == 0
    assert "nothing to submit" in capsys.readouterr().out


def test_cancelled_and_preempted_tasks_resume(
    slurm_cluster, tmp_path, write_tiny_recipe, capsys, monkeypatch
):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    recipe = write_tiny_recipe(tmp_path / "r.yaml")
    out_dir = tmp_path / "runs" / "tiny_skip"
    # 40 epochs: with 6, a variant could finish before the signals below reach it
    argv = [str(recipe), "--out", str(tmp_path / "runs"), "--launcher", "slurm",
            "--trainer.max_epochs=40"]  # fmt: skip
    assert main(argv) == 0  # submits and returns
    assert "submitted 2 variants" in capsys.readouterr().out
    first = json.loads((out_dir / SLURM_DIR / SUBMITTED_FILE).read_text())["variants"]
    jobs = {name: entry["job"] for name, entry in first.items()}
    stop = {"sum": ["scancel"], "concat": ["scancel", "--signal=USR2"]}  # killed, preempted
    for name, command in stop.items():  # each as soon as it has a checkpoint to resume from
        last = out_dir / name / "checkpoints" / "last.ckpt"
        _wait_for(last.is_file, 180, f"{name}'s first checkpoint")
        subprocess.run([*command, jobs[name]], check=True)
    _wait_for(lambda: _squeue().get(jobs["concat"]) == "PENDING", 60, "concat's requeue")
    _wait_for(lambda: jobs["sum"] not in _squeue(), 60, "sum's end")
    # SLURM holds a requeued job for ~2 minutes: a rerun now finds it pending
    assert main(argv) == 0
    out = capsys.readouterr().out
    concat = rf"\[2/2\] concat: pending as job {jobs['concat']}; not submitted again"
    assert re.search(concat, out), out
    assert "submitted 1 variant as job " in out  # only the cancelled one
    subprocess.run(["scontrol", "update", f"jobid={jobs['concat']}", "StartTime=now"], check=True)
    assert main([*argv, "--wait"]) == 0  # submits nothing; waits for both
    assert not re.search(r"^submitted ", capsys.readouterr().out, re.M)
    second = json.loads((out_dir / SLURM_DIR / SUBMITTED_FILE).read_text())["variants"]
    assert second["concat"]["job"] == jobs["concat"] and second["sum"]["job"] != jobs["sum"]
    for name in ("sum", "concat"):
        metrics = json.loads((out_dir / name / "metrics.json").read_text())
        assert metrics["status"] == "finished"
        log = (out_dir / name / "train.log").read_text()
        assert "Restored all states from the checkpoint" in log, name  # resumed, not restarted
    task_logs = "".join(p.read_text() for p in (out_dir / SLURM_DIR).rglob("*_log.out"))
    assert "concat: preempted or timed out; requeued to resume" in task_logs
    assert "concat: resuming from" in task_logs and "sum: resuming from" in task_logs
    assert os.environ["SLURM_CONF"] == str(slurm_cluster.conf)
