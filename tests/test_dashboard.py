"""The W&B workspace of a recipe (seglit.wandb.workspace), checked on its spec, without network."""

from __future__ import annotations

import importlib.util
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from seglit.recipe import Recipe, load_recipe, parse_recipe
from seglit.wandb import workspace as dashboard

REPO = Path(__file__).resolve().parents[1]
SKIP = REPO / "recipes" / "ablation_skip.yaml"
DILATION = REPO / "recipes" / "ablation_dilation.yaml"
CRF_RECIPE = REPO / "recipes" / "deeplabv1_voc.yaml"

needs_library = pytest.mark.skipif(
    importlib.util.find_spec("wandb_workspaces") is None,
    reason="wandb-workspaces is not installed (pip install 'seglit[dashboard]')",
)


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any connection or W&B API object in this process fails the test."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the dashboard tried to reach the network")

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    if importlib.util.find_spec("wandb") is not None:
        import wandb

        monkeypatch.setattr(wandb, "Api", refuse)


def spec_of(recipe: Recipe, *args: Any, **kwargs: Any) -> dict[str, Any]:
    """The JSON spec of the recipe's workspace (arguments as ``workspace_for``)."""
    return dashboard.workspace_spec(dashboard.workspace_for(recipe, *args, **kwargs))


def sections(spec: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Section name -> its panels."""
    bank = spec["spec"]["section"]["panelBankConfig"]["sections"]
    return {s["name"]: s["panels"] for s in bank}


def panels_of(spec: dict[str, Any], view_type: str, section: str | None = None) -> list[dict]:
    """The panels of one view type, in one section or in all."""
    return [
        p
        for name, panels in sections(spec).items()
        for p in panels
        if p["viewType"] == view_type and section in (None, name)
    ]


def weave_key(panel: dict[str, Any]) -> str:
    """The summary key a table (Weave) panel shows."""
    return panel["config"]["panel2Config"]["exp"]["fromOp"]["inputs"]["key"]["val"]


def run_command(*args: str, cwd: Path, **env: str) -> subprocess.CompletedProcess:
    """``python -m seglit.wandb.workspace ARGS`` in ``cwd``; W&B pointed at a closed local port."""
    environ = {k: v for k, v in os.environ.items() if k not in ("WANDB_API_KEY", "WANDB_MODE")}
    environ.update(
        PYTHONPATH=str(REPO),
        WANDB_MODE="offline",
        WANDB_BASE_URL="http://127.0.0.1:9",
        HOME=str(cwd),
        NETRC=str(cwd / "no_netrc"),
    )
    environ.update(env)
    environ = {k: v for k, v in environ.items() if v}
    return subprocess.run(
        [sys.executable, "-m", "seglit.wandb.workspace", *args],
        cwd=cwd,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
    )


@needs_library
@pytest.mark.parametrize("path", [SKIP, DILATION], ids=["skip", "dilation"])
def test_runset_is_the_recipe_group_grouped_by_recipe_and_config(path: Path) -> None:
    recipe = load_recipe(path)
    spec = spec_of(recipe, entity="team", project="proj")
    assert (spec["entity"], spec["project"], spec["displayName"]) == ("team", "proj", recipe.name)
    (runset,) = spec["spec"]["section"]["runSets"]
    filters = {(f["key"]["name"], f["op"]): f["value"] for f in runset["filters"]["filters"]}
    assert filters == {("group", "="): recipe.name, ("jobType", "IN"): ["fit", "summary"]}
    assert runset["grouping"] == [
        {"section": "run", "name": "group"},
        {"section": "config", "name": "seglit.value.config_name"},
    ]
    assert list(sections(spec)) == ["mIoU", "Ablation axes", "Summary", "Per class", "Artifacts"]


@needs_library
@pytest.mark.parametrize(
    ("path", "columns"),
    [
        (SKIP, ["config:seglit.value.axes.net"]),
        (DILATION, ["config:seglit.value.axes.net"]),
    ],
    ids=["skip", "dilation"],
)
def test_parallel_coordinates_columns_are_the_axes_then_miou(
    path: Path, columns: list[str]
) -> None:
    recipe = load_recipe(path)
    spec = spec_of(recipe)
    (panel,) = panels_of(spec, "Parallel Coordinates Plot", "Ablation axes")
    accessors = [c["accessor"] for c in panel["config"]["columns"]]
    assert accessors == [*columns, "summary:val/mIoU"]
    assert len(accessors) == len(recipe.axes) + 1


@needs_library
def test_scalar_axes_are_their_own_config_keys_in_recipe_order() -> None:
    recipe = parse_recipe(
        {
            "name": "lr_sweep",
            "ablation": {
                "model.optimizer.init_args.lr": [0.1, 0.01],
                "model.net": {"a": {"class_path": "x.A"}, "b": {"class_path": "x.B"}},
                "data.init_args.crop_size": [256, 512],
            },
        }
    )
    assert dashboard.axis_columns(recipe) == [
        "model.optimizer.init_args.lr",
        "seglit.axes.net",
        "data.init_args.crop_size",
    ]
    (panel,) = panels_of(spec_of(recipe), "Parallel Coordinates Plot")
    assert [c["accessor"] for c in panel["config"]["columns"]] == [
        "config:model.value.optimizer.init_args.lr",
        "config:seglit.value.axes.net",
        "config:data.value.init_args.crop_size",
        "summary:val/mIoU",
    ]


@needs_library
def test_curves_are_grouped_by_config_with_the_seed_spread() -> None:
    spec = spec_of(load_recipe(SKIP))
    lines = {
        tuple(p["config"]["metrics"]): p["config"]
        for p in panels_of(spec, "Run History Line Plot", "mIoU")
    }
    assert set(lines) == {("val/mIoU",), ("val/loss",), ("train/loss_epoch",)}
    for config in lines.values():
        assert config["xAxis"] == "trainer/global_step"
        assert config["groupBy"] == "seglit.value.config_name"
        assert (config["groupAgg"], config["groupArea"]) == ("mean", "stddev")
    (bar,) = panels_of(spec, "Bar Chart", "Ablation axes")
    assert bar["config"]["metrics"] == ["val/mIoU"]
    assert bar["config"]["groupBy"] == "seglit.value.config_name"


@needs_library
def test_summary_section_shows_the_summary_table_and_plots() -> None:
    spec = spec_of(load_recipe(SKIP))
    (table,) = panels_of(spec, "Weave", "Summary")
    assert weave_key(table) == "summary/table"
    media = [p["config"]["mediaKeys"] for p in panels_of(spec, "Media Browser", "Summary")]
    assert media == [["summary/summary_miou"], ["summary/summary_class_iou"]]


@needs_library
def test_per_class_section_regex_and_bars_when_classes_are_known() -> None:
    recipe = load_recipe(SKIP)
    spec = spec_of(recipe)
    (line,) = panels_of(spec, "Run History Line Plot", "Per class")
    assert line["config"]["metricRegex"] == "val/IoU/.*"
    assert line["config"]["useMetricRegex"] is True
    assert [weave_key(p) for p in panels_of(spec, "Weave", "Per class")] == ["val/per_class_iou"]
    assert panels_of(spec, "Bar Chart", "Per class") == []

    spec = spec_of(recipe, class_names=["background", "aeroplane"])
    (bar,) = panels_of(spec, "Bar Chart", "Per class")
    assert bar["config"]["metrics"] == ["val/IoU/background", "val/IoU/aeroplane"]


@needs_library
def test_artifacts_section_compares_the_crf_only_when_a_variant_uses_it() -> None:
    def metrics(path: Path) -> list[list[str]]:
        spec = spec_of(load_recipe(path))
        return [
            p["config"]["metrics"] for p in panels_of(spec, "Run History Line Plot", "Artifacts")
        ]

    checker = [["val/checkerboard"], ["val/checkerboard_logits"]]
    assert metrics(SKIP) == checker
    assert metrics(CRF_RECIPE) == [*checker, ["val/mIoU", "val/mIoU_before_crf"]]


@needs_library
def test_spec_is_stable_and_loads_back_into_the_library() -> None:
    from wandb_workspaces.workspaces import Workspace, internal

    recipe = load_recipe(DILATION)
    spec = spec_of(recipe, entity="team")
    assert spec == spec_of(recipe, entity="team")  # panel ids included
    assert json.loads(json.dumps(spec)) == spec
    workspace = Workspace._from_model(internal.View.model_validate(spec))
    assert [s.name for s in workspace.sections] == list(sections(spec))
    assert workspace.runset_settings.filters == (
        """Metric("Group") == 'ablation_dilation' and Metric("JobType") in ['fit', 'summary']"""
    )


@needs_library
def test_command_writes_the_spec_offline(tmp_path: Path) -> None:
    summary = tmp_path / "runs" / "ablation_skip" / "summary.json"
    summary.parent.mkdir(parents=True)
    rows = [{"variant": "fcn8s-sum", "per_class_iou": {"background": 0.9, "cat": 0.5}}]
    summary.write_text(json.dumps({"recipe": "ablation_skip", "rows": rows}))

    result = run_command(str(SKIP), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    written = tmp_path / "runs" / "ablation_skip" / "wandb_workspace.json"
    assert str(written.relative_to(tmp_path)) in result.stdout
    spec = json.loads(written.read_text())
    expected = spec_of(load_recipe(SKIP), class_names=["background", "cat"])
    assert spec == expected

    result = run_command(str(SKIP), "--smoke", "--project", "p", "--entity", "e", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    spec = json.loads((tmp_path / "runs/smoke/ablation_skip/wandb_workspace.json").read_text())
    assert (spec["entity"], spec["project"]) == ("e", "p")

    out = tmp_path / "elsewhere" / "ws.json"
    assert run_command(str(DILATION), "--out", str(out), cwd=tmp_path).returncode == 0
    assert json.loads(out.read_text())["displayName"] == "ablation_dilation"


@needs_library
@pytest.mark.parametrize(
    ("env", "reason"),
    [({}, "WANDB_MODE=offline"), ({"WANDB_MODE": ""}, "No API key")],
    ids=["offline", "no-credentials"],
)
def test_create_without_wandb_fails_in_one_line_after_writing(
    tmp_path: Path, env: dict[str, str], reason: str
) -> None:
    out = tmp_path / "ws.json"
    result = run_command(str(SKIP), "--out", str(out), "--create", cwd=tmp_path, **env)
    assert result.returncode == 2
    assert out.is_file()
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("seglit.wandb.workspace: error: cannot create the W&B workspace")
    assert reason in line and str(out) in line


def test_module_imports_neither_torch_nor_lightning(tmp_path: Path) -> None:
    code = (
        "import runpy, sys\n"
        f"sys.argv = ['seglit.wandb.workspace', {str(SKIP)!r}, "
        f"'--out', {str(tmp_path / 'w.json')!r}]\n"
        "try:\n"
        "    runpy.run_module('seglit.wandb.workspace', run_name='__main__')\n"
        "except SystemExit as exit:\n"
        "    assert exit.code in (0, 2), exit.code\n"
        "heavy = ('torch', 'lightning', 'pytorch_lightning', 'torchvision')\n"
        "print(sorted({m.split('.')[0] for m in sys.modules} & set(heavy)))\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "offline"}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_missing_library_is_named_and_the_runner_hook_only_warns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "wandb_workspaces", None)  # as if not installed
    recipe = load_recipe(SKIP)
    with pytest.raises(dashboard.DashboardError, match=r"seglit\[dashboard\]"):
        dashboard.workspace_for(recipe)
    with pytest.warns(UserWarning, match=r"not written: .*seglit\[dashboard\]"):
        assert dashboard.write_workspace_spec(recipe, tmp_path) is None
    assert dashboard.main([str(SKIP), "--out", str(tmp_path / "w.json")]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert "wandb-workspaces" in line and "pip install 'seglit[dashboard]'" in line
    assert not (tmp_path / "w.json").exists()


@needs_library
def test_runner_hook_writes_next_to_the_summary_and_never_raises(tmp_path: Path) -> None:
    recipe = load_recipe(SKIP, smoke=True)
    path = dashboard.write_workspace_spec(recipe, tmp_path, project="p", entity="e")
    assert path == tmp_path / "wandb_workspace.json"
    assert json.loads(path.read_text()) == spec_of(recipe, "e", "p")

    blocked = tmp_path / "blocked"
    blocked.write_text("a file where the recipe folder should be")
    with pytest.warns(UserWarning, match="not written"):
        assert dashboard.write_workspace_spec(recipe, blocked) is None
