"""The recipe runner end to end, as a user runs it: real processes, real files, real W&B runs.

A finished result is bound to its fingerprint: reruns skip it byte for byte, single runs of
the Lightning CLI on a variant's config never write over it, smoke results never stand in
for real ones, and the runner's view of a variant always agrees with the summary's.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml
from wandb_records import read_offline_run

from seglit.io import read_json
from seglit.wandb.offline import find_offline_runs

VARIANTS = ("sum", "concat")


def _outside_jobs(digest: dict[str, str]) -> dict[str, str]:
    """A run folder's files except later jobs' own folders (fit/, validate/ versions)."""
    return {k: v for k, v in digest.items() if not k.startswith(("fit/", "validate/"))}


@pytest.fixture(scope="module")
def finished(tmp_path_factory, write_recipe, run_fit):
    """The tiny two-variant recipe, run once: (folder, recipe, recipe_dir, CompletedProcess)."""
    tmp = tmp_path_factory.mktemp("ablation")
    recipe = write_recipe(tmp)
    first = run_fit(recipe, "--out", tmp / "runs", "--progress-interval", "0.2", cwd=tmp)
    assert first.returncode == 0, first.stdout + first.stderr
    return tmp, recipe, tmp / "runs" / "tiny_skip", first


def test_each_variant_holds_its_fingerprinted_result_and_its_fit_run(finished):
    _, _, recipe_dir, _ = finished
    for name in VARIANTS:
        run = recipe_dir / name
        metrics = json.loads((run / "metrics.json").read_text())
        recorded = json.loads((run / "fingerprint.json").read_text())
        assert metrics["status"] == "finished" and 0.0 <= metrics["best"]["mIoU"] <= 1.0
        assert metrics["fingerprint"] == recorded["fingerprint"]
        assert recorded["config"]["model"]["net"]["init_args"]["fusion"] == name
        assert len(metrics["history"]) == 2 and metrics["train_images_per_sec"] > 0
        assert metrics["best"]["checkerboard"] >= 0.0
        # the log-probabilities' score at every validation (issue 24), logged as a curve
        assert all(h["checkerboard_logits"] >= 0.0 for h in metrics["history"])
        config = yaml.safe_load((run / "config.yaml").read_text())
        assert config["trainer"]["default_root_dir"] == str(run)
        log = (run / "train.log").read_text()
        assert "Tip:" not in log and "LeafSpec" not in log  # third-party noise dropped
        assert "args parameter is intended" not in log and "$ seglit fit" in log
        (wandb_file,) = find_offline_runs(run)
        wandb_run = read_offline_run(wandb_file, timeout_s=30)
        assert (wandb_run.group, wandb_run.name, wandb_run.job_type) == ("tiny_skip", name, "fit")
        assert f"fusion={name}" in wandb_run.tags
        assert wandb_run.config["seglit"]["config_name"] == name
        assert wandb_run.config["seglit"]["fingerprint"] == recorded["fingerprint"]
        assert wandb_run.metric("val/mIoU") == pytest.approx(
            [h["mIoU"] for h in metrics["history"]]
        )
        logged = {key for row in wandb_run.history for key in row}
        assert {"val/samples/_type", "val/per_class_iou/_type", "val/checkerboard"} <= logged
        assert wandb_run.metric("val/checkerboard_logits") == pytest.approx(
            [h["checkerboard_logits"] for h in metrics["history"]]
        )
        assert any(k.startswith("val/confusion_matrix") for k in logged)
        assert any(k.startswith("val/panels") for k in logged)
        assert any(k.startswith("lr-SGD") for k in logged)


def test_console_shows_progress_and_ends_with_the_summary_table(finished):
    _, _, recipe_dir, first = finished
    out = first.stdout
    # without a terminal the live line comes as periodic plain lines
    assert any("epoch" in line and "step" in line for line in out.splitlines()), out
    assert out.count("wandb sync") == 1  # one hint, naming the runs not yet uploaded
    listed = (recipe_dir / "wandb_unsynced.txt").read_text().split()
    assert len(listed) == 3 and all("offline-run-" in p for p in listed)  # 2 fits + summary
    # the table, the logit checkerboard over training, then one verdict line per compared
    # row (issue 24)
    lines = out.rstrip().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("| sum | finished |"))
    assert lines[start + 1].startswith("| concat | finished |")
    assert any(line.startswith("| variant | logit checkerboard") for line in lines[start:])
    verdict = lines[-1]
    assert lines[-2] == "" and verdict.startswith("- concat: ")
    assert any(word in verdict for word in ("answered", "no effect larger", "inconclusive"))
    summary = json.loads((recipe_dir / "summary.json").read_text())
    assert [r["status"] for r in summary["rows"]] == ["finished", "finished"]
    assert summary["rows"][0]["mIoU_std"] is None and " ± " not in out  # one seed: no "±"
    summary_run = read_offline_run(find_offline_runs(recipe_dir / "_summary")[0], timeout_s=30)
    assert (summary_run.group, summary_run.job_type) == ("tiny_skip", "summary")


def test_rerun_skips_finished_variants_and_changes_nothing(finished, run_fit, tree_digest):
    tmp, recipe, recipe_dir, _ = finished
    before = {n: tree_digest(recipe_dir / n) for n in VARIANTS}
    second = run_fit(recipe, "--out", tmp / "runs", cwd=tmp)
    assert second.returncode == 0, second.stdout + second.stderr
    assert second.stdout.count("finished earlier, skipped") == 2
    assert {n: tree_digest(recipe_dir / n) for n in VARIANTS} == before
    assert len(find_offline_runs(recipe_dir / "_summary")) == 1  # one summary run, updated


def test_a_single_run_on_a_finished_variant_writes_a_new_version(finished, run_fit, tree_digest):
    tmp, recipe, recipe_dir, _ = finished
    run = recipe_dir / "concat"
    before = tree_digest(run)
    fit_id = yaml.safe_load((run / "config.yaml").read_text())["trainer"]["logger"]["init_args"][
        "id"
    ]
    cmd = [sys.executable, "-m", "seglit", "fit", "--config", str(run / "config.yaml")]
    single = subprocess.run(
        [*cmd, "--trainer.max_epochs=1"], capture_output=True, text=True, cwd=tmp
    )
    assert single.returncode == 0, single.stderr[-3000:]
    assert f"this fit writes to {run / 'fit' / 'version_0'}" in single.stderr
    assert _outside_jobs(tree_digest(run)) == before  # the ablation's result is untouched
    version = run / "fit" / "version_0"
    assert json.loads((version / "metrics.json").read_text())["status"] == "finished"
    assert (version / "checkpoints" / "last.ckpt").is_file()
    other = read_offline_run(find_offline_runs(version)[0], timeout_s=30)
    assert other.job_type == "fit" and other.run_id != fit_id

    best = next((run / "checkpoints").glob("best-*.ckpt"))
    validate = subprocess.run(
        [sys.executable, "-m", "seglit", "validate", "--config", str(run / "config.yaml"),
         "--ckpt_path", str(best)],
        capture_output=True, text=True, cwd=tmp,
    )  # fmt: skip
    assert validate.returncode == 0, validate.stderr[-3000:]
    job = run / "validate" / "version_0"
    result = json.loads((job / "validate_metrics.json").read_text())
    assert result["num_images"] == 5
    job_run = read_offline_run(find_offline_runs(job)[0], timeout_s=30)
    assert job_run.job_type == "validate" and job_run.run_id != fit_id
    assert _outside_jobs(tree_digest(run)) == before

    again = run_fit(recipe, "--out", tmp / "runs", cwd=tmp)
    assert again.stdout.count("finished earlier, skipped") == 2
    rows = json.loads((recipe_dir / "summary.json").read_text())["rows"]
    assert [r["status"] for r in rows] == ["finished", "finished"]  # runner and summary agree


def test_smoke_results_never_stand_in_for_real_ones(tmp_path, write_recipe, run_fit):
    recipe = write_recipe(
        tmp_path,
        ablation={"model.net.init_args.fusion": ["sum"]},
        smoke={"trainer": {"max_epochs": 1}},
    )
    smoke = run_fit(recipe, "--smoke", cwd=tmp_path)
    assert smoke.returncode == 0, smoke.stdout + smoke.stderr
    assert (tmp_path / "runs" / "smoke" / "tiny_skip" / "sum" / "metrics.json").is_file()
    dry = run_fit(recipe, "--dry-run", cwd=tmp_path)
    assert "outputs would go to runs/tiny_skip/" in dry.stdout  # real runs: another folder

    # the real config pointed at the smoke results on purpose: refused, keys named, by the
    # dry run first (it says what the run would do)
    dry_mixed = run_fit(recipe, "--out", "runs/smoke", "--dry-run", cwd=tmp_path)
    assert dry_mixed.returncode == 2
    assert "holds results of another configuration" in dry_mixed.stderr
    dry_rerun = run_fit(recipe, "--out", "runs/smoke", "--dry-run", "--rerun-changed", cwd=tmp_path)
    assert dry_rerun.returncode == 0, dry_rerun.stdout + dry_rerun.stderr
    assert "--rerun-changed would move 1 old result of another configuration" in dry_rerun.stdout
    assert not (tmp_path / "runs" / "smoke" / "tiny_skip" / "_archive").exists()
    mixed = run_fit(recipe, "--out", "runs/smoke", cwd=tmp_path)
    assert mixed.returncode == 2
    assert "1 variant folder holds results of another configuration; nothing was trained" in (
        mixed.stderr
    )
    assert "trainer.max_epochs: 1 -> 2" in mixed.stderr and "--rerun-changed" in mixed.stderr
    assert not (tmp_path / "runs" / "smoke" / "tiny_skip" / "sum" / "fit").exists()

    rerun = run_fit(recipe, "--out", "runs/smoke", "--rerun-changed", cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "another config's result moved to" in rerun.stdout
    (archived,) = (tmp_path / "runs" / "smoke" / "tiny_skip" / "_archive").iterdir()
    assert json.loads((archived / "metrics.json").read_text())["epochs"] == 1
    metrics = tmp_path / "runs" / "smoke" / "tiny_skip" / "sum" / "metrics.json"
    assert json.loads(metrics.read_text())["epochs"] == 2


def test_a_named_smoke_trains_in_its_own_folder(tmp_path, write_recipe, run_fit, tree_digest):
    recipe = write_recipe(
        tmp_path,
        smoke={"trainer": {"max_epochs": 1}, "ablation": {"only": ["sum"]}},
        smokes={
            "wide": {
                "trainer": {"max_epochs": 1},
                "ablation": {  # its own axis: "sum" again, but a wider net
                    "replace": ["model.net.init_args.fusion"],
                    "model.net.init_args.fusion": {"sum": "sum"},
                },
                "model": {"net": {"init_args": {"base_width": 8}}},
            }
        },
    )
    default = run_fit(recipe, "--smoke", cwd=tmp_path)
    assert default.returncode == 0, default.stdout + default.stderr
    default_dir = tmp_path / "runs" / "smoke" / "tiny_skip"
    before = tree_digest(default_dir)

    named = run_fit(recipe, "--smoke", "wide", cwd=tmp_path)
    assert named.returncode == 0, named.stdout + named.stderr
    assert "finished earlier" not in named.stdout  # not the default smoke's "sum"
    named_dir = tmp_path / "runs" / "smoke" / "tiny_skip-wide"
    assert [p.name for p in named_dir.glob("*/metrics.json")] == ["metrics.json"]
    assert (named_dir / "sum" / "metrics.json").is_file()
    config = yaml.safe_load((named_dir / "sum" / "config.yaml").read_text())
    assert config["model"]["net"]["init_args"]["base_width"] == 8
    assert tree_digest(default_dir) == before  # the default smoke's folder untouched

    dry = run_fit(recipe, "--smoke", "wide", "--dry-run", cwd=tmp_path)
    assert "outputs would go to runs/smoke/tiny_skip-wide/" in dry.stdout
    typo = run_fit(recipe, "--smoke", "wdie", "--dry-run", cwd=tmp_path)
    assert typo.returncode == 2
    assert "no smoke of that name; the recipe's named smokes are ['wide'] (did you mean" in (
        typo.stderr
    )
    sweep = run_fit(recipe, "--smoke", "wide", "--export-sweep", "s.yaml", cwd=tmp_path)
    assert sweep.returncode == 0, sweep.stderr
    command = yaml.safe_load((tmp_path / "s.yaml").read_text())["command"]
    assert command[4:7] == [str(recipe), "--smoke", "wide"]
    # `--smoke RECIPE`, the order that worked before named smokes: still the default smoke
    swapped = run_fit("--smoke", recipe, "--dry-run", cwd=tmp_path)
    assert "outputs would go to runs/smoke/tiny_skip/" in swapped.stdout


def test_a_failing_variant_says_why_and_the_others_run_in_parallel(tmp_path, write_recipe, run_fit):
    recipe = write_recipe(
        tmp_path, ablation={"model.optimizer.init_args.lr": {"diverges": float("nan"), "ok": 0.05}}
    )
    out = tmp_path / "runs"
    result = run_fit(
        recipe, "--out", out, "--parallel", "2", "--trainer.max_epochs=1", cwd=tmp_path
    )
    assert result.returncode == 1
    (line,) = [line for line in result.stdout.splitlines() if "diverges: FAILED" in line]
    assert "training loss is nan" in line  # the cause, not only "see train.log"
    assert "ok: done" in result.stdout
    failed = json.loads((out / "tiny_skip" / "diverges" / "metrics.json").read_text())
    assert failed["status"] == "failed" and "training loss is nan" in failed["error"]
    assert "no checkpoint was written before it" in failed["error"]
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


def test_kill_then_corrupt_last_checkpoint_then_rerun_resumes_from_the_best(
    tmp_path, write_recipe, run_fit, start_fit, tree_digest
):
    recipe = write_recipe(tmp_path, ablation={"trainer.max_epochs": {"short": 1, "long": 8}})
    out = tmp_path / "runs"
    proc, _, _ = start_fit(recipe, "--out", out, cwd=tmp_path, session=True)
    long = out / "tiny_skip" / "long" / "checkpoints"
    short_done = out / "tiny_skip" / "short" / "metrics.json"  # it trains beside long (CPU)
    deadline = time.time() + 300
    while proc.is_alive() and time.time() < deadline:
        if short_done.exists() and (long / "last.ckpt").exists() and any(long.glob("best-*.ckpt")):
            progress = read_json(long.parent / "progress.json") or {}
            if progress.get("epoch", 0) >= 2:
                break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the runner and its training process
    proc.join()
    assert not (long.parent / "metrics.json").exists(), "the long variant finished too early"
    short_before = tree_digest(out / "tiny_skip" / "short")
    last = long / "last.ckpt"
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])  # a torn write

    rerun = run_fit(recipe, "--out", out, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    assert "short: finished earlier, skipped" in rerun.stdout
    assert "last.ckpt cannot be read" in rerun.stdout and "last.ckpt.corrupt" in rerun.stdout
    assert "long: resuming" in rerun.stdout and "resuming from best-" in rerun.stdout
    assert tree_digest(out / "tiny_skip" / "short") == short_before
    metrics = json.loads((long.parent / "metrics.json").read_text())
    assert metrics["status"] == "finished" and metrics["epochs"] == 8
    assert "--ckpt_path" in (long.parent / "train.log").read_text()


def _plan(tmp_path, digest: str = "a" * 16):
    from types import SimpleNamespace

    run_dir = tmp_path / "v-s0"
    run_dir.mkdir()
    return SimpleNamespace(
        index=1,
        name="v-s0",
        run_dir=run_dir,
        fingerprint=SimpleNamespace(digest=digest, config={}, seglit_version="x"),
        status="pending",
    )


def test_a_result_written_in_full_is_kept_when_the_process_then_fails(tmp_path):
    from types import SimpleNamespace

    from seglit.run_folder import FINISHED, RunMetrics, read_metrics, write_metrics
    from seglit.runner.console import Console
    from seglit.runner.train import _finish

    plan = _plan(tmp_path)
    result = RunMetrics(FINISHED, plan.fingerprint.digest, best={"mIoU": 0.5})
    write_metrics(plan.run_dir, result)
    log = plan.run_dir / "train.log"
    log.write_text("wandb: error during teardown\n")
    child = SimpleNamespace(returncode=1, started=time.perf_counter(), log_path=log, log_start=0)
    released = []
    launch = SimpleNamespace(
        plan=plan, child=child, lock=SimpleNamespace(release=lambda: released.append(1))
    )
    lines = []
    console = Console(stream=None)
    console.line = lines.append
    assert _finish(launch, 1, console) is True
    assert read_metrics(plan.run_dir) == result and released == [1]
    assert "val mIoU 0.5000 (then exited 1" in lines[0]


def test_a_folder_another_config_wrote_meanwhile_is_not_started(tmp_path):
    from seglit.run_folder import FINISHED, RunMetrics, write_metrics
    from seglit.runner.console import Console
    from seglit.runner.train import _start

    plan = _plan(tmp_path)
    other = RunMetrics(FINISHED, "b" * 16, best={"mIoU": 0.9})
    write_metrics(plan.run_dir, other)
    lines = []
    console = Console(stream=None)
    console.line = lines.append
    assert _start(plan, 1, 0, False, None, False, console) is None
    assert plan.status == "mismatch" and "not started" in lines[-1]
    assert not (plan.run_dir / "config.yaml").exists()  # nothing of this config written


def test_a_variant_named_outside_only_joins_the_others_in_recipe_order():
    from seglit.recipe import parse_recipe
    from seglit.runner.run import _requested_variants

    recipe = parse_recipe(
        {
            "name": "r",
            "model": {"net": {"class_path": "seglit.models.UNet"}},
            "ablation": {"model.net.init_args.fusion": ["sum", "concat"], "only": ["concat"]},
        }
    )
    assert [v.name for v in _requested_variants(recipe, [], "r.yaml")] == ["concat"]
    chosen = _requested_variants(recipe, ["sum"], "r.yaml")
    assert [v.name for v in chosen] == ["sum", "concat"]  # the summary lists both
