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
