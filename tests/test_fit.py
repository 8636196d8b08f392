"""``python -m seglit.fit``: its command line, dry runs and the errors it names before work.

The runner itself, end to end, is tested in ``tests/runner/``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from seglit.fit import main, parse_overrides


@pytest.fixture
def write_recipe(write_tiny_recipe):
    """``write_recipe(path, **top_level_keys)``: the tiny recipe with one seed."""
    one_seed = {"model.net.init_args.fusion": ["sum", "concat"], "seeds": [0]}

    def write(path: Path, **extra) -> Path:
        return write_tiny_recipe(path, **{"ablation": one_seed, **extra})

    return write


def test_parse_overrides():
    assert parse_overrides(["--trainer.max_epochs=2", "--model.net.init_args.fusion", "sum"]) == {
        "trainer.max_epochs": 2,
        "model.net.init_args.fusion": "sum",
    }


def test_an_override_that_is_not_yaml_is_one_line(tmp_path, write_recipe, capsys):
    recipe = write_recipe(tmp_path / "r.yaml")
    code = main([str(recipe), "--model.net.init_args.depth=[3", "--dry-run"])
    assert code == 2
    err = capsys.readouterr().err
    assert "override --model.net.init_args.depth: '[3' is not a YAML value" in err
    assert "Traceback" not in err


def test_dry_run_lists_and_validates_variants(tmp_path, write_recipe, capsys):
    recipe = write_recipe(tmp_path / "r.yaml")
    assert main([str(recipe), "--dry-run", "--out", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "sum-s0: seed=0 model.net.init_args.fusion=sum"
    assert out[1] == "concat-s0: seed=0 model.net.init_args.fusion=concat"
    assert "2 variants valid" in out[2]
    assert not (tmp_path / "runs").exists()  # a dry run writes nothing


def test_dry_run_with_variant_selects_one(tmp_path, write_recipe, capsys):
    recipe = write_recipe(tmp_path / "r.yaml")
    assert main([str(recipe), "--dry-run", "--variant", "concat-s0"]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("concat-s0:")
    assert main([str(recipe), "--dry-run", "--variant", "nope"]) == 2
    assert "unknown variant(s) ['nope']" in capsys.readouterr().err


def test_variant_reaches_configs_that_only_leaves_out(tmp_path, write_tiny_recipe, capsys):
    axes = {"model.net.init_args.fusion": ["sum", "concat"], "seeds": [0, 1], "only": ["sum"]}
    recipe = write_tiny_recipe(tmp_path / "r.yaml", ablation=axes)
    assert main([str(recipe), "--dry-run"]) == 0
    assert "2 variants valid" in capsys.readouterr().out  # sum-s0, sum-s1
    assert main([str(recipe), "--dry-run", "--variant", "concat-s1"]) == 0
    assert capsys.readouterr().out.splitlines()[0].startswith("concat-s1: seed=1")
    assert main([str(recipe), "--dry-run", "--variant", "concat-s7"]) == 2
    assert "unknown variant(s) ['concat-s7']" in capsys.readouterr().err


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
def test_typo_in_recipe_is_an_error_naming_the_key(tmp_path, write_recipe, capsys, change, message):
    recipe = write_recipe(tmp_path / "r.yaml", **change)
    assert main([str(recipe), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "error" in err and message in err


@pytest.mark.parametrize(
    ("override", "message"),
    [("--trainer.max_epoch=1", "max_epoch"), ("--trainer.max_epochs=abc", "max_epochs")],
)
def test_typo_on_command_line_is_an_error(tmp_path, write_recipe, capsys, override, message):
    recipe = write_recipe(tmp_path / "r.yaml")
    assert main([str(recipe), "--dry-run", override]) == 2
    assert message in capsys.readouterr().err


def test_export_sweep_round_trips_to_the_same_variants(tmp_path, write_recipe, capsys):
    recipe = write_recipe(tmp_path / "r.yaml")
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
        assert lines[0].startswith(f"{name}:") and "1 variant valid" in lines[1]


def test_dry_run_names_values_that_cannot_work(tmp_path, write_recipe, capsys):
    recipe = write_recipe(
        tmp_path / "r.yaml",
        ablation={"model.optimizer.init_args.lr": {"ok": 0.05, "negative": -0.1}},
    )
    assert main([str(recipe), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "variant negative: model.optimizer.init_args.lr: -0.1; expected a learning rate" in err
    recipe = write_recipe(
        tmp_path / "s.yaml",
        model={
            "net": {"class_path": "seglit.models.UNet", "init_args": {"base_width": 4, "depth": 2}},
            "lr_scheduler": {
                "class_path": "seglit.optim.PolyLR",
                "init_args": {"warmup_iters": -5},
            },
        },
    )
    assert main([str(recipe), "--dry-run"]) == 2
    assert "model.lr_scheduler: PolyLR: warmup_iters must be >= 0" in capsys.readouterr().err


def test_a_folder_given_as_the_recipe_is_named_as_a_folder(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2
    assert "is a folder; give a recipe file" in capsys.readouterr().err


@pytest.mark.parametrize("make", ["file", "under_a_file"])
def test_an_output_folder_that_cannot_be_written_stops_at_once(
    tmp_path, write_recipe, capsys, make
):
    recipe = write_recipe(tmp_path / "r.yaml")
    (tmp_path / "taken").write_text("not a folder")
    out = tmp_path / "taken" if make == "file" else tmp_path / "taken" / "runs"
    assert main([str(recipe), "--out", str(out)]) == 3  # not 1, the code of a failed variant
    err = capsys.readouterr().err
    assert str(out) in err and ("is a file" in err or "cannot write" in err)


def test_missing_data_stop_the_runner_before_training_with_the_fix(tmp_path, capsys):
    recipe = tmp_path / "voc.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "name": "real_voc",
                "trainer": {"accelerator": "cpu", "max_epochs": 1},
                "model": {"net": {"class_path": "seglit.models.UNet"}},
                "data": {
                    "class_path": "seglit.data.VOCDataModule",
                    "init_args": {"root": str(tmp_path / "data" / "voc")},
                },
            }
        )
    )
    assert main([str(recipe), "--out", str(tmp_path / "runs")]) == 2
    err = capsys.readouterr().err
    assert "VOCDevkit".lower() in err.lower() and "python -m seglit.data prepare voc" in err
    assert not (tmp_path / "runs" / "real_voc" / "base").exists()  # nothing started


def test_max_steps_ending_before_the_first_validation_are_named_before_training(
    tmp_path, write_recipe, synthetic_root, capsys
):
    import shutil

    from seglit.data.synthetic import MARKER_NAME

    # the synthetic tree without its marker reads as Pascal VOC: 16 train images
    voc = tmp_path / "voc"
    shutil.copytree(synthetic_root, voc)
    (voc / "VOCdevkit" / "VOC2012" / MARKER_NAME).unlink()
    recipe = write_recipe(tmp_path / "r.yaml")
    raw = yaml.safe_load(recipe.read_text())
    raw["trainer"]["devices"] = 1
    raw["data"] = {
        "class_path": "seglit.data.VOCDataModule",
        "init_args": {"root": str(voc), "batch_size": 8, "crop_size": 48, "num_workers": 0},
    }
    recipe.write_text(yaml.safe_dump(raw))
    assert main([str(recipe), "--dry-run", "--trainer.max_steps=1"]) == 2
    assert capsys.readouterr().err.splitlines() == [
        "seglit.fit: error: variants sum-s0, concat-s0: trainer.max_steps: 1 ends before the "
        "first validation (after 2 steps: 16 train images / batch 8 = 2 steps per epoch x "
        "check_val_every_n_epoch 1); no validation would run: set max_steps >= 2"
    ]
    assert main([str(recipe), "--dry-run", "--trainer.max_steps=2"]) == 0  # validates at 2
    assert "2 variants valid" in capsys.readouterr().out


@pytest.mark.parametrize("module", ["seglit.fit", "seglit.data"])
def test_help_imports_neither_torch_nor_lightning_nor_wandb(module):
    code = (
        "import runpy, sys\n"
        f"sys.argv = [{module!r}, '--help']\n"
        "try:\n"
        f"    runpy.run_module({module!r}, run_name='__main__')\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = ('torch', 'lightning', 'wandb', 'segmentation_models_pytorch')\n"
        "print('LOADED', [m for m in heavy if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "LOADED []" in out.stdout, out.stdout[-500:] + out.stderr[-2000:]


def test_max_steps_are_checked_against_the_synthetic_lab_s_train_split(
    tmp_path, write_recipe, capsys
):
    recipe = write_recipe(tmp_path / "r.yaml")
    raw = yaml.safe_load(recipe.read_text())
    raw["trainer"]["devices"] = 1
    raw["data"]["init_args"].update(batch_size=4)  # the tiny synthetic lab: 16 train images
    recipe.write_text(yaml.safe_dump(raw))
    assert main([str(recipe), "--dry-run", "--trainer.max_steps=3"]) == 2
    err = capsys.readouterr().err
    assert "trainer.max_steps: 3 ends before the first validation (after 4 steps" in err
    assert main([str(recipe), "--dry-run", "--trainer.max_steps=4"]) == 0
