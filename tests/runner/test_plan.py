"""seglit.runner.plan with parts of a recipe given as YAML files: they travel with each
variant (read when the recipe is loaded, from the current folder)."""

from __future__ import annotations

import pytest
import yaml

from seglit.config_builder import ConfigBuilder
from seglit.fingerprint import Fingerprint
from seglit.recipe import RecipeError, load_recipe
from seglit.runner.plan import plan_variants


@pytest.fixture
def with_files(tmp_path, write_tiny_recipe, monkeypatch):
    """``(write, raw)``: ``write(**top_level_keys)`` writes the tiny recipe with those keys
    replaced; ``data.yaml``, ``net.yaml`` and ``trainer.yaml`` hold the recipe's own parts."""
    raw = yaml.safe_load(write_tiny_recipe(tmp_path / "recipe.yaml").read_text())
    (tmp_path / "data.yaml").write_text(yaml.safe_dump(raw["data"]))
    (tmp_path / "net.yaml").write_text(yaml.safe_dump(raw["model"]["net"]))
    (tmp_path / "trainer.yaml").write_text(yaml.safe_dump(raw["trainer"]))
    monkeypatch.chdir(tmp_path)

    def write(**keys):
        (tmp_path / "recipe.yaml").write_text(yaml.safe_dump({**raw, **keys}))
        return tmp_path / "recipe.yaml"

    return write, raw


def _plans(path, overrides=None):
    recipe = load_recipe(path)
    builder = ConfigBuilder()
    plans = plan_variants(recipe, recipe.variants(), path.parent / "runs", overrides or {},
                          builder.resolve)  # fmt: skip
    return plans, builder


def test_files_are_written_into_the_variant_s_config(with_files):
    """The variant's config.yaml is read from its run folder, where ``data.yaml`` would not
    resolve; its fingerprint is the one ``seglit fit --config`` computes from it."""
    write, raw = with_files
    path = write(data="data.yaml", trainer="trainer.yaml")
    plans, builder = _plans(path)
    for plan in plans:
        assert plan.config["data"] == raw["data"]
        assert plan.config["trainer"]["max_epochs"] == raw["trainer"]["max_epochs"]
        assert Fingerprint.of(builder.resolve(plan.config)).digest == plan.fingerprint.digest


def test_an_override_or_an_axis_merges_into_a_file_s_content(with_files):
    write, raw = with_files
    model = {**raw["model"], "net": "net.yaml"}  # the recipe's axis: net.init_args.fusion
    plans, _ = _plans(write(model=model, data="data.yaml"), {"data.init_args.batch_size": 4})
    for plan, fusion in zip(plans, ["sum", "concat"]):
        net = plan.config["model"]["net"]
        assert net["class_path"] == raw["model"]["net"]["class_path"]
        assert net["init_args"]["fusion"] == fusion
        assert plan.config["data"]["class_path"] == raw["data"]["class_path"]
        assert plan.config["data"]["init_args"]["batch_size"] == 4


def test_a_missing_file_is_named(with_files):
    write, _ = with_files
    with pytest.raises(RecipeError, match=r"data: config file 'missing.yaml' not found"):
        load_recipe(write(data="missing.yaml"))
