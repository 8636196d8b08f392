"""Run a recipe: check everything, train what is not finished, summarise.

:func:`run_recipe` is what ``python -m seglit.fit RECIPE`` does, step by step:

1. check that the output folder can be written (exit 3 otherwise);
2. load the recipe, prepare and resolve every variant's config and fingerprint it;
   then fetch, once and under a lock, the pretrained weights the unfinished variants need
   (and, with ``--download``, missing VOC data): :mod:`seglit.runner.fetch`;
3. build what is cheap to build for the variants to run (net on the meta device,
   datamodule, optimizer on a dummy parameter, scheduler) and check their data exist
   (exit 2, naming the variant and the problem, before anything trains);
4. stop on folders that hold another config's result (exit 2, naming the keys that
   differ), unless ``--rerun-changed`` archives them;
5. train each variant not finished under its fingerprint, one process each, holding a lock
   on its folder (a second runner skips it), resuming from the newest readable checkpoint
   (:mod:`seglit.runner.train`);
6. write ``summary.{md,csv,json}`` and the plots, update the recipe's W&B summary run, and
   print the table last.

With ``--launcher slurm``, steps 5 and 6 become a SLURM job array and a summary job
(:mod:`seglit.runner.slurm`).
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from seglit.recipe import Recipe, Variant, get_dotted, load_recipe, set_dotted
from seglit.run_folder import (
    FINISHED,
    MISMATCH,
    PENDING,
    UNSYNCED_LIST,
    WANDB_LOGGER_CLASSES,
)
from seglit.runner.console import Console
from seglit.runner.fetch import (
    drop_covered,
    fetch_before_start,
    missing_weights,
    without_weights,
)
from seglit.runner.launch import (
    keep_parent_fork_safe,
)
from seglit.runner.plan import (
    VariantPlan,
    archive,
    busy_message,
    conflict_message,
    locked_elsewhere,
    plan_variants,
)
from seglit.runner.train import train
from seglit.text import plural
from seglit.validation import (
    config_problems,
    max_steps_problems,
    quick_problems,
    runner_problems,
    uses_seglit_train_loader,
)

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_OUTPUT, EXIT_INTERRUPTED = 0, 1, 2, 3, 130


class RunnerError(RuntimeError):
    """A problem found before training: the message names it; ``code`` is the exit status."""

    def __init__(self, message: str, code: int = EXIT_CONFIG) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class RunnerOptions:
    """The command line of ``python -m seglit.fit`` (see :mod:`seglit.fit`)."""

    recipe: Path
    smoke: bool | str = False
    """``True``: the recipe's ``smoke:`` block; a name: its ``smokes.<name>`` block."""
    dry_run: bool = False
    variants: list[str] | None = None
    out: Path | None = None
    verbose: bool = False
    parallel: int | None = None
    """Variants trained at once; ``None``: 2 when all train on the CPU on 2+ cores, else 1
    (:func:`seglit.runner.train.slots_and_threads`)."""
    export_sweep: Path | None = None
    rerun_changed: bool = False
    progress_interval: float = 30.0
    fork: bool = False
    overrides: dict[str, Any] = field(default_factory=dict)
    extra: list[str] = field(default_factory=list)
    launcher: str | None = None
    """``slurm`` (or ``submitit-local``): submit the variants instead of training them here."""
    wait: bool = False
    """With a launcher: follow the submitted jobs until the summary is written."""
    download: bool = False
    """Prepare a dataset whose root is missing (``python -m seglit.data prepare --download``)."""


def output_root(options: RunnerOptions) -> Path:
    """``--out``, or ``runs/`` (``runs/smoke/`` with ``--smoke``: never mixed with real runs)."""
    if options.out is not None:
        return options.out
    return Path("runs/smoke") if options.smoke else Path("runs")


def check_output_dir(out: Path) -> None:
    """Raise :class:`RunnerError` (exit 3) unless ``out`` is, or can be made, a writable folder."""
    if out.exists() and not out.is_dir():
        raise RunnerError(f"--out {out} is a file, not a folder", EXIT_OUTPUT)
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as err:
        raise RunnerError(
            f"cannot write in the output folder {out} ({err.strerror or err}); "
            "choose another with --out",
            EXIT_OUTPUT,
        ) from None


def run_recipe(options: RunnerOptions, console: Console | None = None) -> int:
    """Run a recipe (see the module docstring); returns the exit status.

    0: every selected variant finished; 1: some failed; 2: a recipe, config, data or
    conflict problem found before training; 3: the output folder cannot be written;
    130: interrupted.
    """
    console = console or Console(interval_s=options.progress_interval)
    out = output_root(options)
    if not (options.dry_run or options.export_sweep):
        check_output_dir(out)
    recipe = load_recipe(options.recipe, smoke=options.smoke)
    variants = _requested_variants(recipe, options.variants or [], options.recipe)
    quick_check(recipe, variants, options, console)  # before torch: a typo answered at once
    if options.fork:
        keep_parent_fork_safe()
    from seglit.config_builder import ConfigBuilder, ConfigError

    checker = ConfigBuilder()  # torch, Lightning: only from its first parse on
    recipe_dir = out / recipe.name
    overrides = options.overrides
    if options.launcher:
        from seglit.runner.launcher_block import launcher_settings, split_overrides

        overrides, block = split_overrides(overrides)  # --launcher.KEY=VALUE
        launcher = launcher_settings(recipe, options.smoke, block)
        overrides = {**launcher.trainer_overrides(), **overrides}
    # Every problem found before training, one line each (quick_check raised on the runner's
    # own flags and on what it can see without torch).
    problems: list[str] = []

    def resolve(config: dict[str, Any], source: str) -> dict[str, Any] | None:
        try:
            return checker.resolve(config, source=source)
        except ConfigError as err:
            problems.append(str(err))
            return None

    plans = plan_variants(recipe, variants, recipe_dir, overrides, resolve)
    selected = [p for p in plans if not options.variants or p.name in options.variants]
    # a config already refused, or a model that cannot be built: named without downloading
    # weights or datasets first
    fetching = not (options.dry_run or options.export_sweep or problems)
    refused: set[str] = set()
    todo = [plan for plan in selected if plan.status != FINISHED]
    if fetching and (options.download or missing_weights(todo)):
        refused = build_without_weights(selected, checker, problems)
        fetching = not refused
    missing = fetch_before_start(selected, fetching, options.download, problems, console)
    check_variants([p for p in selected if p.name not in refused], checker, problems)
    drop_covered(problems, missing)
    if options.export_sweep is not None:
        if problems:
            raise RunnerError(problems_message(problems))
        write_sweep(options, recipe, selected)
        console.line(
            f"wrote W&B sweep config over {plural(len(selected), 'variant')} to "
            f"{options.export_sweep}"
        )
        console.line(f"  wandb sweep {options.export_sweep}   # then: wandb agent <sweep id>")
        return EXIT_OK
    if options.dry_run:
        listed = [v for v in variants if not options.variants or v.name in options.variants]
        for variant in listed:
            console.line(variant_line(variant))
        if problems:
            raise RunnerError(problems_message(problems))
        conflicts = [p for p in selected if p.status == MISMATCH]
        if conflicts and not options.rerun_changed:
            resolve_conflicts(conflicts, rerun_changed=False, console=console)  # the run's error
        console.line(f"{plural(len(selected), 'variant')} valid; outputs would go to {recipe_dir}/")
        if conflicts:
            console.line(
                f"--rerun-changed would move {plural(len(conflicts), 'old result')} of another "
                f"configuration to {recipe_dir}/_archive/"
            )
        if options.launcher:
            from seglit.runner.slurm import dry_run_script

            console.line(dry_run_script(launcher, recipe, selected, recipe_dir))
        return EXIT_OK
    if problems:
        raise RunnerError(problems_message(problems))
    resolve_conflicts(selected, options.rerun_changed, console)
    choose_wandb_mode(selected, console)
    if options.launcher:
        from seglit.runner.slurm import launch

        return launch(
            options.launcher, recipe, variants, plans, selected, recipe_dir, launcher,
            options.wait, console,
        )  # fmt: skip
    failures = train(selected, options, console)
    return summarize(recipe, variants, plans, recipe_dir, console) or (
        EXIT_FAILED if failures else EXIT_OK
    )


def quick_check(
    recipe: Recipe, variants: list[Variant], options: RunnerOptions, console: Console
) -> None:
    """Name the problems found without importing torch or Lightning (:func:`quick_problems`:
    key typos in seglit's own classes, values that cannot work) in a second or two.

    Raises:
        RunnerError: listing them (``--dry-run`` lists the variants first).
    """
    problems = runner_problems(options.progress_interval, options.parallel)
    for variant in variants:
        config = copy.deepcopy(variant.config)
        for key, value in options.overrides.items():
            set_dotted(config, key, value)
        problems += quick_problems(config, f"variant {variant.name}")
    if not problems:
        return
    if options.dry_run:
        for variant in variants:
            if not options.variants or variant.name in options.variants:
                console.line(variant_line(variant))
    raise RunnerError(problems_message(problems))


def _requested_variants(recipe: Recipe, requested: list[str], path: str) -> list[Variant]:
    """The recipe's variants (those of ``ablation.only`` when it is set), plus any config
    outside ``only`` that ``--variant`` names explicitly.

    Raises:
        RunnerError: ``requested`` names a variant the recipe does not have.
    """
    variants = recipe.variants()
    kept = {v.name for v in variants} | set(requested)
    if len(kept) == len(variants):
        return variants
    every = recipe.variants(respect_only=False)
    names = [v.name for v in every]
    unknown = [n for n in requested if n not in names]
    if unknown:
        raise RunnerError(f"unknown variant(s) {unknown}; {path} has {names}")
    return [v for v in every if v.name in kept]


# ------------------------------------------------------------------------------ before training


def build_without_weights(plans: list[VariantPlan], checker: Any, problems: list[str]) -> set[str]:
    """Build each unfinished variant cheaply with its pretrained weights off
    (:func:`~seglit.runner.fetch.without_weights`), before anything is fetched; every
    problem is appended to ``problems``. Returns the names of the variants refused."""
    from seglit.config_builder import ConfigError

    refused = set()
    for plan in plans:
        if plan.status == FINISHED:
            continue
        config = without_weights(plan.config, plan.resolved)
        if config is None:
            continue  # built after the fetch
        try:
            checker.build(config, f"variant {plan.name}")
        except ConfigError as err:
            problems.append(str(err))
            refused.add(plan.name)
    return refused


def check_variants(plans: list[VariantPlan], checker: Any, problems: list[str]) -> None:
    """Check each variant's values, build it cheaply, check its data (once per distinct
    data config) and its ``trainer.max_steps`` against the train split's size; every problem
    found is appended to ``problems``, one line each."""
    from seglit.config_builder import ConfigError
    from seglit.data.base import DataError

    train_sizes: dict[str, int | None] = {}  # by data config; None: unknown or unreadable
    for plan in plans:
        source = f"variant {plan.name}"
        found = config_problems(plan.resolved, source)
        problems += found
        if found or plan.status == FINISHED:
            continue
        try:
            datamodule = checker.build(plan.config, source)
        except ConfigError as err:
            problems.append(str(err))
            continue
        key = json.dumps(plan.resolved.get("data"), sort_keys=True, default=str)
        if key not in train_sizes:
            train_sizes[key] = None
            try:
                train_sizes[key] = datamodule.check_data()
            except DataError as err:
                problems.append(f"{source}: data: {err}")
        size = train_sizes[key]
        if size is not None and uses_seglit_train_loader(datamodule):
            found = max_steps_problems(plan.resolved, size, datamodule.batch_size)
            problems += [f"{source}: {problem}" for problem in found]


_VARIANT_PROBLEM = re.compile(r"^(.*?)variant ([^\s:)]+)(\)?: )(.*)$")


def merge_variant_problems(problems: list[str]) -> list[str]:
    """One line per problem: the same problem in several variants names them together
    (``variants sum, concat: ...``); the order of first appearance is kept."""
    merged: dict[tuple[str, str, str], list[str]] = {}
    for problem in problems:
        match = _VARIANT_PROBLEM.match(problem)
        key = (match.group(1), match.group(3), match.group(4)) if match else ("", "", problem)
        merged.setdefault(key, []).append(match.group(2) if match else "")
    lines = []
    for (before, close, text), names in merged.items():
        if names == [""]:
            lines.append(text)
        else:
            label = "variant" if len(names) == 1 else "variants"
            lines.append(f"{before}{label} {', '.join(names)}{close}{text}")
    return lines


def problems_message(problems: list[str]) -> str:
    """One problem as it is; several as a count and one indented line each."""
    problems = merge_variant_problems(problems)
    if len(problems) == 1:
        return problems[0]
    listed = "".join(f"\n  {problem}" for problem in problems)
    return f"{len(problems)} problems found; nothing was trained:{listed}"


def variant_line(variant: Variant) -> str:
    """``fcn8s-sum-s0: seed=0 model.net=fcn8s-sum (FCN8s)``: a variant's seed and axis values
    (the label, and the value where the label does not show it)."""
    shown = []
    for key, value in variant.overrides.items():
        short, label = _short(value), variant.labels.get(key)
        shown.append(f"{key}={short}" if label in (None, short) else f"{key}={label} ({short})")
    seed = f" seed={variant.seed}" if variant.seed is not None else ""
    return f"{variant.name}:{seed} {', '.join(shown)}".rstrip()


def resolve_conflicts(plans: list[VariantPlan], rerun_changed: bool, console: Console) -> None:
    """Stop on folders holding another config's result, or archive them (``--rerun-changed``)."""
    conflicts = [p for p in plans if p.status == MISMATCH]
    if not conflicts:
        return
    busy = [p for p in conflicts if locked_elsewhere(p)]
    if busy:  # never archived while it trains, whatever --rerun-changed says
        raise RunnerError("\n".join(busy_message(p) for p in busy))
    if not rerun_changed:
        details = "\n".join(conflict_message(p) for p in conflicts)
        raise RunnerError(
            f"{plural(len(conflicts), 'variant folder')} "
            f"{'holds' if len(conflicts) == 1 else 'hold'} results of another configuration; "
            "nothing was trained:\n"
            f"{details}\n"
            "Use another --out for this configuration, or pass --rerun-changed to move the "
            "old results to _archive/ and train these variants again."
        )
    for plan in conflicts:
        target = archive(plan)
        plan.status = PENDING
        console.line(f"[{plan.index}] {plan.name}: another config's result moved to {target}")


def choose_wandb_mode(plans: list[VariantPlan], console: Console) -> None:
    """Probe W&B once; if it is unreachable, every run of this call goes offline at once.

    W&B online without a network would otherwise wait for its init timeout in every
    variant and in the summary run.
    """
    from seglit.wandb.logger import resolve_mode

    modes = [
        get_dotted(p.config, "trainer.logger.init_args.mode", "auto")
        for p in plans
        if get_dotted(p.config, "trainer.logger.class_path") in WANDB_LOGGER_CLASSES
    ]
    if not any(resolve_mode(m) == "online" for m in modes):
        return
    url = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai")
    reason = http_unanswered(url)
    if reason is not None:
        os.environ["WANDB_MODE"] = "offline"
        console.line(
            f"W&B is unreachable ({url}: {reason}); the runs of this call are "
            "kept offline (upload them later with the wandb sync command printed at the end)"
        )


def http_unanswered(url: str, timeout_s: float = 3.0) -> str | None:
    """Why ``url`` gives no HTTP answer within ``timeout_s`` (``None`` if it answers).

    Any HTTP status counts as an answer; a refused connection, a name that does not resolve,
    or a server that accepts the connection and never answers does not (a TCP connect alone
    would pass that last one, and every W&B run would then wait for its own timeout).
    """
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=timeout_s):
            return None
    except urllib.error.HTTPError:
        return None  # an answer, whatever its status
    except urllib.error.URLError as err:
        reason = err.reason
        return getattr(reason, "strerror", None) or str(reason)
    except TimeoutError:
        return f"no answer within {timeout_s:g} s"
    except (OSError, ValueError) as err:
        return getattr(err, "strerror", None) or str(err)


def write_sweep(options: RunnerOptions, recipe: Recipe, plans: list[VariantPlan]) -> None:
    """Write a W&B sweep config (method grid) whose agents run exactly these variants."""
    command = ["${env}", "${interpreter}", "-m", "seglit.fit", str(options.recipe)]
    if options.smoke:
        command.append("--smoke")
        if isinstance(options.smoke, str):
            command.append(options.smoke)
    command += ["--out", str(output_root(options)), *options.extra, "${args}"]
    sweep = {
        "name": recipe.name,
        "method": "grid",
        "metric": {"name": "val/mIoU", "goal": "maximize"},
        "parameters": {"variant": {"values": [p.name for p in plans]}},
        "command": command,
    }
    path = Path(options.export_sweep)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(sweep, sort_keys=False))


# ---------------------------------------------------------------------------------- summary


def summarize(
    recipe: Recipe,
    variants: list[Any],
    plans: list[VariantPlan],
    recipe_dir: Path,
    console: Console,
) -> int:
    """Write the summary files, plots and W&B summary run; print the table last.

    Returns:
        0, or :data:`EXIT_FAILED` when the summary could not be written.
    """
    from seglit.summary import build_rows, summary_text, write_summary
    from seglit.wandb.offline import unsynced_runs

    fingerprints = {p.name: p.fingerprint.digest for p in plans}
    try:
        rows = build_rows(recipe_dir, variants, recipe.baseline_group(), fingerprints)
        files = write_summary(recipe_dir, recipe.name, rows)
    except OSError as err:
        console.line(f"seglit.fit: error: cannot write the summary in {recipe_dir}: {err}")
        return EXIT_FAILED
    dashboard = _log_summary_run(recipe, rows, recipe_dir, plans, files)
    written = [p.name for p in files[1:]]
    if dashboard is not None:
        written.append(f"{dashboard.name} (python -m seglit.wandb.workspace --create uploads it)")
    console.line(f"\nwritten: {files[0]}, {', '.join(written)}")
    unsynced = unsynced_runs(recipe_dir)
    if unsynced:
        listing = recipe_dir / UNSYNCED_LIST
        listing.write_text("".join(f"{p}\n" for p in unsynced))
        console.line(
            f"W&B: {plural(len(unsynced), 'offline run')} not uploaded yet; upload them with:\n"
            f"  wandb sync $(cat {listing})"
        )
    console.line(f"\n{recipe.name}: summary of {recipe_dir}/\n")
    console.line(summary_text(rows))
    return EXIT_OK


def _log_summary_run(
    recipe: Recipe, rows: list[Any], recipe_dir: Path, plans: list[VariantPlan], files: list
) -> Path | None:
    """Update the recipe's W&B summary run and write its workspace spec (W&B runs only).

    ``files`` are the summary's files (:func:`seglit.summary.write_summary`): the plots
    among them are attached to the summary run.

    Returns:
        The workspace spec file, if one was written.
    """
    logger = get_dotted(plans[0].config, "trainer.logger") if plans else None
    if not (isinstance(logger, dict) and logger.get("class_path") in WANDB_LOGGER_CLASSES):
        return None
    from seglit.wandb.summary import log_summary_run
    from seglit.wandb.workspace import write_workspace_spec

    init = logger.get("init_args", {})
    project, entity = init.get("project", "seglit"), init.get("entity")
    os.environ.setdefault("WANDB_SILENT", "true")
    log_summary_run(
        recipe.name,
        rows,
        recipe_dir,
        project=project,
        mode=init.get("mode", "auto"),
        plots=files,
        entity=entity,
    )
    if importlib.util.find_spec("wandb_workspaces") is None:  # the optional extra
        return None
    return write_workspace_spec(recipe, recipe_dir, project=project, entity=entity)


def _short(value: Any) -> str:
    if isinstance(value, dict) and "class_path" in value:
        return str(value["class_path"]).rsplit(".", 1)[-1]
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()
