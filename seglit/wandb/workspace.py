"""The W&B workspace of a recipe, built with W&B's own workspace library.

    python -m seglit.wandb.workspace recipes/ablation_skip.yaml [--smoke [NAME]] [--entity E]
        [--project P] [--out FILE] [--create]

For a recipe, :func:`workspace_for` builds the
:class:`wandb_workspaces.workspaces.Workspace` a researcher would otherwise click
together: the runs of the recipe's W&B group (its ``fit`` runs and its summary run),
grouped by the recipe and by config (``config.seglit.config_name``, so the seeds of one
config aggregate), and five sections:

* **mIoU**: ``val/mIoU``, ``val/loss`` and ``train/loss_epoch`` over
  ``trainer/global_step``, one line per config (mean over seeds, +-1 std band);
* **Ablation axes**: a parallel-coordinates panel over the recipe's axes ending in
  ``val/mIoU``, and a bar of ``val/mIoU`` per config (mean, std over seeds);
* **Summary**: the summary run's ``summary/table`` (a table panel) and its two plots;
* **Per class**: ``val/IoU/<class>`` (a regex line panel; a bar panel when the class names
  are known), and the runs' ``val/per_class_iou`` tables;
* **Artifacts**: ``val/checkerboard``, ``val/mIoU`` against ``val/mIoU_before_crf`` when
  a variant uses the dense CRF, and the ``val/panels`` images.

:func:`workspace_spec` is that workspace as the library's own JSON model (the payload
``Workspace.save()`` sends), built without contacting W&B; the command writes it to
``<runs>/<recipe>/wandb_workspace.json`` and, with ``--create``, saves the workspace to
W&B (network and credentials needed) and prints its URL. The recipe runner calls
:func:`write_workspace_spec` after writing its summary.

An axis whose values are all scalars is a parallel-coordinates column under its own
config key (``model.net.init_args.fusion``); an axis of mappings or lists (``model.net:
{fcn8s: {class_path: ...}}``) has no single config value to plot, so its column is the
value's label, ``seglit.axes.<last key part>``, which the runner records in every run's
config.

Needs the optional ``wandb-workspaces`` package (``pip install 'seglit[dashboard]'``).
Imports neither torch nor Lightning.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from seglit.io import atomic_write_text
from seglit.recipe import (
    Recipe,
    RecipeError,
    add_smoke_argument,
    get_dotted,
    load_recipe,
    recipe_and_smoke,
)
from seglit.run_folder import CLASS_HEATMAP, MIOU_PLOT, SUMMARY_JSON, WANDB_LOGGER_CLASSES

SPEC_FILE = "wandb_workspace.json"
EXTRA = "pip install 'seglit[dashboard]'"
STEP = "trainer/global_step"
"""The x axis of every curve (Lightning's W&B logger steps metrics by it)."""
MIOU = "val/mIoU"
CONFIG_NAME = "seglit.config_name"
"""W&B config key of a variant's config name (its name without the seed)."""
JOB_TYPES = ("fit", "summary")
SUMMARY_TABLE = "summary/table"
SUMMARY_PLOTS = tuple(f"summary/{Path(name).stem}" for name in (MIOU_PLOT, CLASS_HEATMAP))
API_TIMEOUT = 20.0
"""Seconds W&B may take to answer ``--create`` before it gives up."""

EXIT_OK, EXIT_ERROR, EXIT_OUTPUT = 0, 2, 3


class DashboardError(RuntimeError):
    """The workspace cannot be built or created: the message says why, in one line."""


def _library() -> tuple[Any, Any]:
    """``wandb_workspaces.workspaces`` and ``wandb_workspaces.reports.v2``.

    Raises:
        DashboardError: The package is not installed (the message names the extra).
    """
    try:
        import wandb_workspaces.reports.v2 as wr
        import wandb_workspaces.workspaces as ws
    except ImportError:
        raise DashboardError(
            f"the W&B workspace needs the optional package wandb-workspaces: {EXTRA}"
        ) from None
    return ws, wr


def axis_columns(recipe: Recipe) -> list[str]:
    """The W&B config key that shows each ablation axis, in the recipe's order.

    The axis key itself when all its values are scalars, else the label the runner records
    in ``seglit.axes.<last key part>`` (a mapping or a list is no single plottable value).
    """
    columns = []
    for key, values in recipe.axes.items():
        scalar = all(v is None or isinstance(v, (str, int, float)) for v in values.values())
        columns.append(key if scalar else f"seglit.axes.{_leaf(key)}")
    return columns


def _leaf(key: str) -> str:
    """The last part of a dotted key (``model.net.init_args.fusion`` -> ``fusion``)."""
    return key.rsplit(".", 1)[-1]


def uses_crf(recipe: Recipe) -> bool:
    """Whether any variant turns on the dense CRF (``model.inference.crf``)."""
    return any(get_dotted(v.config, "model.inference.crf") for v in recipe.variants())


def _line(wr: Any, metrics: Sequence[str], title: str, **kwargs: Any) -> Any:
    """A line panel over :data:`STEP`, one line per config (mean, +-1 std over seeds)."""
    return wr.LinePlot(
        title=title,
        x=STEP,
        y=list(metrics),
        groupby=wr.Config(CONFIG_NAME),
        groupby_aggfunc="mean",
        groupby_rangefunc="stddev",
        **kwargs,
    )


def _per_config_bar(wr: Any, metrics: Sequence[str], title: str) -> Any:
    """A bar panel of the runs' last values, one bar per config (mean, std over seeds)."""
    return wr.BarPlot(
        title=title,
        metrics=list(metrics),
        orientation="v",
        groupby=wr.Config(CONFIG_NAME),
        groupby_aggfunc="mean",
        groupby_rangefunc="stddev",
    )


def _sections(recipe: Recipe, class_names: Sequence[str]) -> list[Any]:
    """The workspace's sections: mIoU, Ablation axes, Summary, Per class, Artifacts."""
    ws, wr = _library()
    curves = [_line(wr, [key], key) for key in (MIOU, "val/loss", "train/loss_epoch")]

    ablation = [_per_config_bar(wr, [MIOU], f"{MIOU} per config")]
    if recipe.axes:
        columns = [
            wr.ParallelCoordinatesPlotColumn(metric=wr.Config(key), display_name=_leaf(key))
            for key in axis_columns(recipe)
        ]
        columns.append(wr.ParallelCoordinatesPlotColumn(metric=wr.SummaryMetric(MIOU)))
        ablation.insert(0, wr.ParallelCoordinatesPlot(title=f"{recipe.name} axes", columns=columns))

    summary = [wr.WeavePanelSummaryTable(table_name=SUMMARY_TABLE)]
    summary += [wr.MediaBrowser(title=key, media_keys=[key]) for key in SUMMARY_PLOTS]

    per_class = [
        _line(wr, [], "val/IoU per class", metric_regex="val/IoU/.*"),
        wr.WeavePanelSummaryTable(table_name="val/per_class_iou"),
    ]
    if class_names:
        ious = [f"val/IoU/{c}" for c in class_names]
        per_class.insert(0, _per_config_bar(wr, ious, "val/IoU per class and config"))

    artifacts = [
        _line(wr, ["val/checkerboard"], "val/checkerboard"),
        _line(wr, ["val/checkerboard_logits"], "val/checkerboard_logits (log-probabilities)"),
    ]
    if uses_crf(recipe):
        artifacts.append(_line(wr, [MIOU, "val/mIoU_before_crf"], "mIoU with and without CRF"))
    artifacts.append(wr.MediaBrowser(title="val/panels", media_keys=["val/panels"]))

    one_column = ws.SectionLayoutSettings(columns=1, rows=3)  # a readable table
    return [
        ws.Section(name="mIoU", is_open=True, panels=curves),
        ws.Section(name="Ablation axes", is_open=True, panels=ablation),
        ws.Section(name="Summary", is_open=True, panels=summary, layout_settings=one_column),
        ws.Section(name="Per class", is_open=True, panels=per_class),
        ws.Section(name="Artifacts", is_open=True, panels=artifacts),
    ]


def workspace_for(
    recipe: Recipe,
    entity: str | None = None,
    project: str = "seglit",
    class_names: Sequence[str] = (),
    name: str | None = None,
) -> Any:
    """The W&B workspace of a recipe (built locally; nothing is sent to W&B).

    Args:
        recipe: The recipe (its name is the W&B group of its runs).
        entity: W&B entity; ``None`` leaves it empty (``--create`` fills in the default
            entity of the API key).
        project: W&B project of the runs.
        class_names: The dataset's classes, for a per-class bar panel (the regex panel
            over ``val/IoU/*`` is there either way).
        name: The workspace's name (default: the recipe's name).

    Returns:
        A :class:`wandb_workspaces.workspaces.Workspace`; ``.save()`` creates it in W&B.

    Raises:
        DashboardError: ``wandb-workspaces`` is not installed.
    """
    ws, _ = _library()
    runs = len(recipe.variants()) + 1  # every run of the recipe, and its summary run
    workspace = ws.Workspace(
        entity=entity or "",
        project=project,
        name=name or recipe.name,
        sections=_sections(recipe, class_names),
        settings=ws.WorkspaceSettings(x_axis=STEP, max_runs=max(runs, 10)),
        runset_settings=ws.RunsetSettings(
            filters=[ws.Metric("Group") == recipe.name, ws.Metric("JobType").isin(list(JOB_TYPES))],
            groupby=[ws.Metric("Group"), ws.Config(CONFIG_NAME)],
            order=[ws.Ordering(ws.Metric("Name"), ascending=True)],
            pinned_columns=[
                f"config:{_backend_key(key)}" for key in (CONFIG_NAME, *axis_columns(recipe))
            ]
            + [f"summary:{MIOU}"],
        ),
    )
    _stable_ids(workspace, recipe.name)
    return workspace


def _backend_key(key: str) -> str:
    """W&B's storage key of a nested config key: ``a.b.c`` -> ``a.value.b.c``."""
    first, _, rest = key.partition(".")
    return f"{first}.value" + (f".{rest}" if rest else "")


def _stable_ids(workspace: Any, salt: str) -> None:
    """Give every panel an id derived from its place, so one recipe gives one spec."""
    for s, section in enumerate(workspace.sections):
        for p, panel in enumerate(section.panels):
            panel._id = hashlib.sha1(f"{salt}/{s}/{p}".encode()).hexdigest()[:11]


def workspace_spec(workspace: Any) -> dict[str, Any]:
    """A workspace as a JSON-ready dict: the library's own model of the W&B view.

    It is what ``Workspace.save()`` sends (entity, project, display name and the view
    ``spec``: sections, panels, runset filters and grouping), built without contacting
    W&B.

    Args:
        workspace: A :class:`wandb_workspaces.workspaces.Workspace`, e.g. the recipe's from
            :func:`workspace_for`.
    """
    return workspace._to_model().model_dump(mode="json", by_alias=True, exclude_none=True)


def class_names_from_summary(recipe_dir: str | Path) -> list[str]:
    """The classes in ``<recipe_dir>/summary.json`` (empty when there is none yet)."""
    try:
        rows = json.loads((Path(recipe_dir) / SUMMARY_JSON).read_text())["rows"]
        return list(dict.fromkeys(c for row in rows for c in row.get("per_class_iou") or {}))
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return []


def write_spec(spec: dict[str, Any], path: str | Path) -> Path:
    """Write a workspace spec as JSON (atomically) and return its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(spec, indent=2) + "\n")
    return path


def write_workspace_spec(
    recipe: Recipe,
    recipe_dir: str | Path,
    project: str = "seglit",
    entity: str | None = None,
) -> Path | None:
    """Write ``<recipe_dir>/wandb_workspace.json``; for the runner, after its summary.

    Cheap (no network) and never raises: a missing ``wandb-workspaces`` package or any
    other failure is a warning.

    Returns:
        The spec file, or ``None`` when it could not be written (a warning says why).
    """
    try:
        workspace = workspace_for(recipe, entity, project, class_names_from_summary(recipe_dir))
        return write_spec(workspace_spec(workspace), Path(recipe_dir) / SPEC_FILE)
    except Exception as err:
        warnings.warn(f"W&B workspace spec for {recipe.name!r} not written: {err}", stacklevel=2)
        return None


def create_workspace(
    recipe: Recipe,
    entity: str | None = None,
    project: str = "seglit",
    class_names: Sequence[str] = (),
) -> str:
    """Save the recipe's workspace to W&B and return its URL (network and credentials).

    Raises:
        DashboardError: W&B is offline (``WANDB_MODE``), has no credentials or is
            unreachable, or refused the workspace (one-line message).
    """
    mode = os.environ.get("WANDB_MODE", "")
    if mode in ("offline", "disabled", "dryrun"):
        raise DashboardError(f"WANDB_MODE={mode}")
    _library()
    import wandb

    try:
        api = wandb.Api(timeout=API_TIMEOUT)  # checks the credentials with the server
        workspace = workspace_for(recipe, entity or api.default_entity, project, class_names)
        workspace.save()
        return workspace.url
    except Exception as err:
        message = " ".join(str(err).split()) or type(err).__name__
        raise DashboardError(message[:300]) from None


def logger_target(recipe: Recipe) -> tuple[str | None, str | None]:
    """The ``(project, entity)`` the recipe's seglit W&B logger sets (``None`` when unset)."""
    logger = get_dotted(recipe.config, "trainer.logger")
    if isinstance(logger, dict) and logger.get("class_path") in WANDB_LOGGER_CLASSES:
        init = logger.get("init_args") or {}
        return init.get("project"), init.get("entity")
    return None, None


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m seglit.wandb.workspace``."""
    parser = argparse.ArgumentParser(
        prog="python -m seglit.wandb.workspace",
        description="Write the W&B workspace of a recipe as a spec file; create it in W&B "
        "with --create.",
        epilog="Exit status: 0 written (and created), 2 a recipe problem, a missing "
        "wandb-workspaces or a failed --create, 3 the spec file cannot be written.",
    )
    parser.add_argument("recipe", type=Path, nargs="?", help="recipe YAML file")
    add_smoke_argument(
        parser, "the recipe's smoke variants (with NAME: those of its smokes.NAME block)"
    )
    parser.add_argument("--entity", default=None, help="W&B entity (default: the recipe's)")
    parser.add_argument(
        "--project", default=None, help="W&B project (default: the recipe's, else seglit)"
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"spec file (default runs/<recipe>/{SPEC_FILE}, runs/smoke/... with --smoke)",
    )
    parser.add_argument(
        "--create", action="store_true", help="also save the workspace to W&B (online)"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run ``python -m seglit.wandb.workspace``; return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    recipe_and_smoke(parser, args)
    prog = "seglit.wandb.workspace"
    try:
        recipe = load_recipe(args.recipe, smoke=args.smoke)
    except RecipeError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return EXIT_ERROR
    recipe_project, recipe_entity = logger_target(recipe)
    project = args.project or recipe_project or "seglit"
    entity = args.entity or recipe_entity
    # the runner's output folder (seglit.runner.run.output_root), without importing it
    recipe_dir = Path("runs/smoke" if args.smoke else "runs") / recipe.name
    out = args.out or recipe_dir / SPEC_FILE
    class_names = class_names_from_summary(recipe_dir)
    try:
        spec = workspace_spec(workspace_for(recipe, entity, project, class_names))
    except DashboardError as err:
        print(f"{prog}: error: {err}", file=sys.stderr)
        return EXIT_ERROR
    try:
        write_spec(spec, out)
    except OSError as err:
        print(f"{prog}: error: cannot write {out}: {err}", file=sys.stderr)
        return EXIT_OUTPUT
    print(f"W&B workspace spec of {recipe.name} written to {out}")
    if not args.create:
        return EXIT_OK
    try:
        url = create_workspace(recipe, entity, project, class_names)
    except DashboardError as err:
        print(
            f"{prog}: error: cannot create the W&B workspace: {err} (the spec is in {out}; "
            "rerun with --create online, after `wandb login`)",
            file=sys.stderr,
        )
        return EXIT_ERROR
    print(f"W&B workspace: {url}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
