"""seglit.validation: the checks that name a bad value or a key typo before training.

The key-typo check reads the classes' source instead of importing them (a typo is named in
about a second); here it is compared with the real signatures, so it can never refuse a key
the real parser accepts.
"""

from __future__ import annotations

import inspect
import subprocess
import sys
from pathlib import Path

import pytest

from seglit.validation import config_problems, quick_problems, source_parameters

REPO = Path(__file__).resolve().parents[1]


def _accepted(cls: type) -> set[str]:
    names: set[str] = set()
    for klass in inspect.getmro(cls):
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        parameters = inspect.signature(init).parameters
        names |= {
            n
            for n, p in parameters.items()
            if n != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
        }
        if not any(p.kind == p.VAR_KEYWORD for p in parameters.values()):
            break
    return names


def _classes() -> list[str]:
    import seglit.data as data
    import seglit.models as models

    paths = [
        f"seglit.models.{name}" for name in models.__all__ if inspect.isclass(getattr(models, name))
    ]
    paths += [f"seglit.data.{name}" for name in dir(data) if name.endswith("DataModule")]
    paths += [
        "seglit.module.SegmentationModule",
        "lightning.pytorch.trainer.trainer.Trainer",
        "torch.optim.SGD",
        "torch.optim.AdamW",
        "seglit.optim.PolyLR",
    ]
    return paths


@pytest.mark.parametrize("class_path", _classes())
def test_the_source_reading_agrees_with_the_real_signature(class_path):
    import importlib

    module, _, name = class_path.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    found = source_parameters(class_path)
    if found is None:  # undecided: the real parser checks it
        return
    assert set(found) == _accepted(cls), class_path


def test_a_typo_is_named_without_importing_torch():
    code = (
        "import sys\n"
        "from seglit.validation import quick_problems\n"
        "config = {'data': {'class_path': 'seglit.data.SyntheticVOCDataModule',\n"
        "                   'init_args': {'crop_sise': 3}}, 'trainer': {'max_epoch': 2}}\n"
        "print(quick_problems(config, 'r.yaml'))\n"
        "print(sorted({'torch', 'lightning'} & set(sys.modules)))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert result.stdout.splitlines() == [
        str(
            [
                "r.yaml: key 'trainer.max_epoch' is not accepted "
                "(did you mean 'trainer.max_epochs'?)",
                "r.yaml: data.init_args: key 'crop_sise' is not accepted by "
                "seglit.data.SyntheticVOCDataModule (did you mean 'crop_size'?)",
            ]
        ),
        "[]",
    ], result.stderr


def test_values_that_cannot_work_are_named_with_what_is_expected():
    config = {
        "trainer": {"max_epochs": 2, "check_val_every_n_epoch": 4, "limit_val_batches": 0},
        "model": {"optimizer": {"class_path": "torch.optim.SGD",
                                "init_args": {"lr": 0.1, "weight_decay": -1, "momentum": 0.9}}},
        "data": {"init_args": {"batch_size": 2, "crop_size": [0, 5], "scale_range": [2.0, 1.0]}},
    }  # fmt: skip
    assert config_problems(config, "v") == [
        "v: model.optimizer.init_args.weight_decay: -1; expected >= 0",
        "v: trainer.limit_val_batches: 0; expected > 0: without a validation the run has no "
        "best epoch and no result",
        "v: trainer.max_epochs: 2 is less than trainer.check_val_every_n_epoch: 4; no "
        "validation would run, so no best epoch: set max_epochs >= 4 or "
        "check_val_every_n_epoch <= 2",
        "v: data.init_args.crop_size: [0, 5]; expected a positive size (an int, or [height, "
        "width])",
        "v: data.init_args.scale_range: [2.0, 1.0]; expected 0 < low <= high (a crop's scale)",
    ]
    assert quick_problems({"trainer": {"max_epochs": 5}}) == []


@pytest.mark.parametrize(
    ("config", "problem"),
    [
        ({"trainer": {"max_epochs": -1}}, "trainer.max_epochs: -1 (no limit) with no "),
        ({"trainer": {"max_epochs": 2}, "seed_everything": -3}, "seed_everything: -3; expected"),
        ({"trainer": {"max_epochs": 2}, "seed_everything": 2**32}, "seed_everything: 4294967296"),
        (
            {"trainer": {"max_epochs": 2}, "seed_everything": "zero"},
            "expected true, false or an int",
        ),
        ({"model": {"head_lr_mult": -1}}, "model.head_lr_mult: -1; expected >= 0"),
        ({"model": {"aux_weight": -0.4}}, "model.aux_weight: -0.4; expected >= 0"),
        ({"model": {"class_weights": [1, -1]}}, "model.class_weights: [1, -1]; expected"),
        ({"model": {"class_weights": [0, 0]}}, "at least one > 0"),
    ],
)
def test_a_run_that_never_ends_seeds_numpy_refuses_and_negative_weights_are_named(config, problem):
    (found,) = config_problems(config)
    assert problem in found


@pytest.mark.parametrize(
    "config",
    [
        {"trainer": {"max_epochs": -1, "max_steps": 100}},
        {"trainer": {"max_epochs": -1, "max_time": "00:01:00:00"}},
        {"trainer": {"max_epochs": 2}, "seed_everything": 0},
        {"trainer": {"max_epochs": 2}, "seed_everything": True},
        {"trainer": {"max_epochs": 2}, "seed_everything": 2**32 - 1},
    ],
)
def test_seeds_and_step_limits_that_work_pass(config):
    assert config_problems(config) == []


def test_a_long_error_keeps_the_part_that_says_what_to_do():
    from seglit.config_builder import short_error

    advice = "copy the file to /root/.cache/torch/hub/checkpoints/vgg16-397923af.pth"
    message = short_error(ValueError("weights missing: " + "detail " * 120 + advice))
    assert message.endswith(advice) and message.startswith("weights missing: ")
    assert short_error(ValueError("short; " + advice)) == "short; " + advice


def _data(class_path: str, crop: object, scale: list[float], **init: object) -> dict:
    return {"data": {"class_path": class_path,
                     "init_args": {"crop_size": crop, "scale_range": scale, **init}}}  # fmt: skip


def test_a_crop_larger_than_any_scaled_image_is_named_with_the_largest_useful_crop():
    voc = _data("seglit.data.VOCDataModule", 513, [1.0, 1.0])
    assert config_problems(voc, "v") == [
        "v: data.init_args.crop_size: 513; expected at most [500, 500] (height, width): "
        "seglit.data.VOCDataModule's images are at most 500x500 px, x1 at scale_range's high "
        "end, so a larger crop is always partly padding"
    ]
    city = _data("seglit.data.CityscapesDataModule", [1024, 2100], [0.5, 1.0])
    assert "crop_size: [1024, 2100]; expected at most [1024, 2048]" in config_problems(city)[0]
    for lab_class in ("SyntheticVOCDataModule", "SyntheticFarCueDataModule"):
        lab = _data(f"seglit.data.{lab_class}", 197, [0.75, 1.5], max_size=131)
        assert "crop_size: 197; expected at most [196, 196]" in config_problems(lab)[0]


def test_crops_the_data_can_fill_and_unknown_data_are_fine():
    fine = [
        _data("seglit.data.VOCDataModule", 513, [0.5, 2.0]),  # recipes: 500 px x2
        _data("seglit.data.VOCDataModule", 321, [1.0, 1.0]),
        _data("seglit.data.CityscapesDataModule", [512, 1024], [0.5, 2.0]),
        _data("seglit.data.SyntheticVOCDataModule", 196, [0.75, 1.5], max_size=131),
        _data("seglit.data.SyntheticCityscapesDataModule", 128, [0.75, 1.0], max_size=131),
        _data("seglit.data.SyntheticVOCDataModule", 900, [0.75, 1.5]),  # max_size unstated
        _data("my_lab.BigImages", 4096, [1.0, 1.0]),  # a user's class: sizes unknown
    ]
    assert [config_problems(config) for config in fine] == [[]] * len(fine)


@pytest.mark.parametrize(
    ("overrides", "line"),
    [
        (
            ["--data.init_args.crop_size=400"],
            "variants sum, concat: data.init_args.crop_size: 400; expected at most [196, 196]",
        ),
        (
            ["--model.net.init_args.depth=5", "--data.init_args.crop_size=8"],
            "variants sum, concat: data.init_args.crop_size: 8; expected a crop UNet can take",
        ),
    ],
)
def test_dry_run_names_a_crop_that_cannot_work(
    write_tiny_recipe, tmp_path, capsys, overrides, line
):
    from seglit import fit

    recipe = write_tiny_recipe(tmp_path / "tiny.yaml")
    argv = [str(recipe), "--dry-run", "--out", str(tmp_path / "runs"), *overrides]
    assert fit.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"seglit.fit: error: {line}") and len(err.splitlines()) == 1


# --------------------------------------------- trainer.max_steps against the train split


def _steps(steps: object, **trainer: object) -> dict:
    """A config of ``steps`` max_steps on one device, validating every epoch."""
    return {"trainer": {"devices": 1, "num_nodes": 1, "max_steps": steps,
                        "check_val_every_n_epoch": 1, **trainer}}  # fmt: skip


def test_max_steps_that_end_before_the_first_validation_are_named():
    from seglit.validation import max_steps_problems

    assert max_steps_problems(_steps(5), 160, 8) == [
        "trainer.max_steps: 5 ends before the first validation (after 20 steps: 160 train "
        "images / batch 8 = 20 steps per epoch x check_val_every_n_epoch 1); no validation "
        "would run: set max_steps >= 20"
    ]
    assert max_steps_problems(_steps(20), 160, 8) == []  # the 20th step ends the epoch
    several = _steps(9, devices=[0, 1], check_val_every_n_epoch=2, accumulate_grad_batches=2)
    assert max_steps_problems(several, 160, 8) == [
        "trainer.max_steps: 9 ends before the first validation (after 10 steps: 160 train "
        "images / 2 processes / batch 8 = 10 batches / accumulate_grad_batches 2 = 5 steps "
        "per epoch x check_val_every_n_epoch 2); no validation would run: set max_steps >= 10"
    ]


# (train images, batch, devices, check_val_every_n_epoch, accumulate_grad_batches): the step
# of the first validation, as measured with Lightning 2.6 on the tiny config (a run with
# max_steps at that step validated; one step fewer did not)
MEASURED = [
    ((16, 4, 1, 1, 1), 4),
    ((16, 5, 1, 1, 1), 3),  # the ragged batch is dropped
    ((16, 32, 1, 1, 1), 1),  # unless it is the only one
    ((16, 4, 1, 2, 1), 8),
    ((16, 5, 1, 1, 2), 2),  # the epoch's last batch steps the optimizer
    ((16, 4, 1, 1, 3), 2),
    ((16, 4, 1, 2, 3), 4),
    ((16, 4, 2, 1, 1), 2),  # 2 CPU processes (DDP): 8 images each
    ((16, 5, 2, 1, 1), 1),
]


@pytest.mark.parametrize(("setting", "first"), MEASURED)
def test_the_first_validation_step_is_the_one_lightning_validates_at(setting, first):
    from seglit.validation import max_steps_problems

    size, batch, devices, every, accumulate = setting
    trainer = {"devices": devices, "check_val_every_n_epoch": every,
               "accumulate_grad_batches": accumulate}  # fmt: skip
    assert max_steps_problems(_steps(first, **trainer), size, batch) == []
    if first > 1:
        refused = max_steps_problems(_steps(first - 1, **trainer), size, batch)
        assert len(refused) == 1 and refused[0].endswith(f"set max_steps >= {first}")


CALLBACKS = "lightning.pytorch.callbacks"


@pytest.mark.parametrize(
    "trainer",
    [
        {"limit_train_batches": 0.5},
        {"limit_train_batches": 1},  # one batch, not the whole split
        {"val_check_interval": 0.5},
        {"val_check_interval": 4},
        {"overfit_batches": 2},
        {"devices": "auto"},
        {"devices": -1},
        {"devices": "0,1"},
        {"num_nodes": "2"},
        {"accumulate_grad_batches": None},
        {"callbacks": [{"class_path": f"{CALLBACKS}.GradientAccumulationScheduler"}]},
        {"fast_dev_run": True},
        {"max_steps": -1},
        {"max_steps": None},
        {"max_epochs": 0},  # named by trainer_problems
    ],
)
def test_max_steps_are_not_judged_when_the_count_is_uncertain(trainer):
    from seglit.validation import max_steps_problems

    assert max_steps_problems(_steps(5, **trainer), 160, 8) == []


def test_an_int_val_check_interval_counts_batches_not_optimizer_steps():
    # measured: max_steps 1 x 2 accumulated batches reaches the validation at batch 2
    every_2_batches = {"check_val_every_n_epoch": None, "val_check_interval": 2}
    assert config_problems(_steps(1, **every_2_batches, accumulate_grad_batches=2)) == []
    assert config_problems(_steps(1, **every_2_batches)) == [
        "trainer.max_steps: 1 is less than trainer.val_check_interval: 2; no validation "
        "would run: set max_steps >= 2"
    ]


def test_max_steps_are_counted_only_for_seglit_s_own_train_loader():
    from seglit.data import SyntheticVOCDataModule
    from seglit.validation import uses_seglit_train_loader

    class Renamed(SyntheticVOCDataModule):  # a user's subclass that loads as seglit does
        pass

    class OwnLoader(SyntheticVOCDataModule):  # a user's subclass with its own train loader
        def train_dataloader(self):
            return None

    assert uses_seglit_train_loader(SyntheticVOCDataModule)
    assert uses_seglit_train_loader(Renamed)
    assert not uses_seglit_train_loader(OwnLoader)
    assert not uses_seglit_train_loader(OwnLoader(root="unused"))  # an instance too
