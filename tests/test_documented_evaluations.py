"""Every documented ``seglit validate|test`` command runs, and its options win.

The commands are read from ``docs/*.md`` and the recipes' headers (a ``seglit validate`` or
``seglit test`` line with ``--config``, backslash continuations joined). Each runs on a tiny
checkpoint of its recipe (the smoke config, a few images, one epoch, trained through the
CLI), three ways: as documented; without its options (the checkpoint's saved settings); and
with its options on a copy of the checkpoint without hyperparameters (nothing to restore:
exactly what the command states). The documented run must equal the last one, and an
inference option must change the result as it should (``crf=false``: the number is the one
before the CRF). Sliding windows are scaled down to the tiny images (:func:`_tiny_window`).
"""

from __future__ import annotations

import copy
import re
import shlex
import zipfile
from pathlib import Path

import pytest
import torch
import yaml

from seglit.cli import SeglitCLI
from seglit.recipe import load_recipe

ROOT = Path(__file__).parents[1]
SOURCES = sorted(ROOT.glob("docs/*.md")) + sorted(ROOT.glob("recipes/*.yaml"))
COMMAND = re.compile(r"\bseglit (validate|test)\b.*--config")


def documented_commands() -> list[tuple[str, str, list[str]]]:
    """``(source, recipe name, argv)`` of every documented evaluation command."""
    found = []
    for path in SOURCES:
        lines = [
            line.lstrip("#").strip() if path.suffix == ".yaml" else line.strip()
            for line in path.read_text().splitlines()
        ]
        i = 0
        while i < len(lines):
            line = lines[i]
            if COMMAND.search(line) and "`" not in line:
                while line.endswith("\\") and i + 1 < len(lines):
                    i += 1
                    line = line[:-1] + " " + lines[i]
                argv = shlex.split(line[line.index("seglit ") :])[1:]
                config = argv[argv.index("--config") + 1]
                i += 1
                if config == "...":  # a synopsis (docs/index.md), not a command
                    continue
                match = re.match(r"runs/([^/]+)/([^/]+)/", config)
                if match:
                    recipe, variant = match.groups()
                else:
                    assert config.startswith("<run>/"), f"{path.name}: {line}"
                    recipe, variant = path.stem, None
                found.append((f"{path.name}:{i}", f"{recipe}:{variant or ''}", argv))
                continue
            i += 1
    return found


COMMANDS = documented_commands()


def test_the_documented_evaluations_are_found() -> None:
    """v1/v2 with and without the CRF, v3 multi-scale + flip, sliding window."""
    joined = [" ".join(argv) for _, _, argv in COMMANDS]
    recipes = {recipe.split(":")[0] for _, recipe, _ in COMMANDS}
    assert {"deeplabv1_voc", "deeplabv2_voc", "deeplabv3_voc"} <= recipes
    assert any("crf=false" in c for c in joined)
    assert any("flip=true" in c and "scales=" in c for c in joined)
    assert any("mode=slide" in c for c in joined)


def _tiny_run(recipe_name: str, variant: str, folder: Path) -> Path:
    """Train the recipe's smoke variant for one short epoch through the CLI."""
    from seglit.cli import main as seglit_main

    recipe = load_recipe(ROOT / "recipes" / f"{recipe_name}.yaml", smoke=True)
    chosen = next(v for v in recipe.variants() if v.name == variant)
    config = copy.deepcopy(chosen.config)
    config["trainer"].update(
        max_epochs=1,
        check_val_every_n_epoch=1,
        val_check_interval=1.0,
        limit_train_batches=2,
        logger=False,
        default_root_dir=str(folder),
    )
    config["data"]["init_args"].update(num_train=4, num_val=2, batch_size=2, crop_size=32)
    if config["model"].get("inference", {}).get("crf"):
        config["model"]["inference"]["crf_iterations"] = 2
    config["checkpoint"] = {"dirpath": str(folder / "checkpoints")}
    config["run_summary"] = {"dirpath": str(folder)}
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    seglit_main(["fit", "--config", str(folder / "config.yaml")])
    return folder


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory: pytest.TempPathFactory):
    """``runs(recipe key) -> run folder``, each trained once per module."""
    cache: dict[tuple[str, str], Path] = {}
    base = tmp_path_factory.mktemp("documented")

    def get(key: str) -> Path:
        recipe, variant = key.split(":")
        if not variant:  # <run>: the recipe's first variant
            variant = load_recipe(ROOT / "recipes" / f"{recipe}.yaml").variants()[0].name
        if (recipe, variant) not in cache:
            cache[recipe, variant] = _tiny_run(recipe, variant, base / f"{recipe}-{variant}")
        return cache[recipe, variant]

    return get


_RESULTS: dict[tuple[str, ...], dict[str, float]] = {}


def _validate(argv: list[str]) -> dict[str, float]:
    """The logged metrics of ``seglit`` run with ``argv`` (each command line run once)."""
    if tuple(argv) not in _RESULTS:
        cli = SeglitCLI(args=argv, parser_kwargs={"exit_on_error": False})
        metrics = {k: float(v) for k, v in cli.trainer.callback_metrics.items()}
        _RESULTS[tuple(argv)] = metrics
    return _RESULTS[tuple(argv)]


def _tiny_window(arg: str) -> str:
    """A sliding-window size or step scaled down 32x: the tiny images are smaller than the
    documented windows, where slide equals whole and could not show that the option ran."""
    key, _, value = arg.partition("=")
    sizes = [max(4, int(v) // 32) for v in yaml.safe_load(value)]
    return f"{key}=[{','.join(map(str, sizes))}]"


def _localise(argv: list[str], run: Path, checkpoint: Path) -> tuple[list[str], list[str]]:
    """The command on the tiny run, and its ``--model.*`` options."""
    out, options = [], []
    args = iter(argv)
    for arg in args:
        if arg in ("--config", "--ckpt_path"):
            next(args)
            out += [arg, str(run / "config.yaml") if arg == "--config" else str(checkpoint)]
        elif arg.startswith("--model."):
            if arg.startswith(("--model.inference.crop_size=", "--model.inference.stride=")):
                arg = _tiny_window(arg)
            out.append(arg)
            options.append(arg)
        else:
            out.append(arg)
    return out, options


@pytest.mark.parametrize(("source", "recipe", "argv"), COMMANDS, ids=[c[0] for c in COMMANDS])
def test_documented_command_runs_and_its_options_win(
    source: str, recipe: str, argv: list[str], tiny_runs, tmp_path: Path
) -> None:
    run = tiny_runs(recipe)
    documented_ckpt = Path(argv[argv.index("--ckpt_path") + 1]).name
    pattern = "last.ckpt" if documented_ckpt == "last.ckpt" else "best-*.ckpt"
    (checkpoint,) = sorted((run / "checkpoints").glob(pattern))
    # written by seglit: plain values only (LightningCLI's --ckpt_path loads weights_only)
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
    command, options = _localise(argv, run, checkpoint)
    documented = _validate(command)
    stated = [a for a in command if not a.startswith("--model.")]
    as_saved = _validate(stated)  # the checkpoint's own settings
    bare = tmp_path / "bare.ckpt"  # nothing to restore: what the command states, only
    torch.save({k: v for k, v in saved.items() if k != "hyper_parameters"}, bare)
    expected = _validate(_localise(argv, run, bare)[0])
    assert documented.keys() == expected.keys(), source
    for key, value in expected.items():
        assert documented[key] == pytest.approx(value, rel=1e-6, abs=1e-9), (source, key)
    saved_crf = (saved["hyper_parameters"].get("inference") or {}).get("crf", False)
    if "--model.inference.crf=false" in options:
        assert saved_crf and "val/mIoU_before_crf" in as_saved
        assert "val/mIoU_before_crf" not in documented  # the CRF did not run
        assert documented["val/mIoU"] == pytest.approx(as_saved["val/mIoU_before_crf"])
    elif saved_crf:
        assert "val/mIoU_before_crf" in documented
    if any(o.startswith("--model.inference.") for o in options):
        # an inference option that changes the views changes the log-probabilities
        assert documented["val/loss"] != pytest.approx(as_saved["val/loss"], rel=1e-9), source
    if not options:
        assert documented == pytest.approx(as_saved)


def test_load_trained_inference_overrides_win(tiny_runs) -> None:
    """``seglit.trained``: the given inference fields replace the variant's."""
    from seglit.trained import load_trained

    run = tiny_runs("deeplabv1_voc:")
    assert load_trained(run).inference.crf
    trained = load_trained(run, inference={"crf": False, "flip": True})
    assert not trained.inference.crf and trained.inference.flip
    assert trained.inference.crf_bilateral_sxy == 121.0  # the variant's, kept


def test_a_checkpoint_holding_an_inference_config_object_loads(tiny_runs, tmp_path) -> None:
    """Checkpoints whose hyperparameters pickled an ``InferenceConfig`` (older seglit, or a
    module built in Python and saved by a plain Trainer) still load on ``--ckpt_path``
    (``weights_only=True``, that class allowed), and the command line still wins."""
    from seglit.inference import InferenceConfig

    run = tiny_runs("deeplabv1_voc:")
    (checkpoint,) = sorted((run / "checkpoints").glob("best-*.ckpt"))
    saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
    saved["hyper_parameters"]["inference"] = InferenceConfig(crf=True, crf_iterations=2)
    old = tmp_path / "old.ckpt"
    torch.save(saved, old)
    with zipfile.ZipFile(old) as archive:  # the class itself is in the pickle
        pickled = next(n for n in archive.namelist() if n.endswith("data.pkl"))
        assert b"InferenceConfig" in archive.read(pickled)
    config = str(run / "config.yaml")
    base = ["validate", "--config", config, "--ckpt_path", str(old)]
    with_crf = _validate(base)
    without = _validate([*base, "--model.inference.crf=false"])
    assert "val/mIoU_before_crf" in with_crf and "val/mIoU_before_crf" not in without
    assert without["val/mIoU"] == pytest.approx(with_crf["val/mIoU_before_crf"])
