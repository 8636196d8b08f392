"""seglit.runner.plan: a class config given as a YAML file travels with the variant."""

from __future__ import annotations

import pytest
import yaml

from seglit.config_builder import ConfigBuilder
from seglit.fingerprint import Fingerprint
from seglit.recipe import RecipeError, load_recipe
from seglit.runner.plan import plan_variants


@pytest.fixture
def recipe_with_data_file(tmp_path, write_tiny_recipe, monkeypatch):
    """``data: data.yaml``, read (as the Lightning CLI reads it) from the current folder."""
    raw = yaml.safe_load(write_tiny_recipe(tmp_path / "recipe.yaml").read_text())
    (tmp_path / "data.yaml").write_text(yaml.safe_dump(raw["data"]))
    raw["data"] = "data.yaml"
    (tmp_path / "recipe.yaml").write_text(yaml.safe_dump(raw))
    monkeypatch.chdir(tmp_path)
    return load_recipe(tmp_path / "recipe.yaml"), raw


def test_a_data_file_is_written_into_the_variant_s_config(recipe_with_data_file, tmp_path):
    """The variant's config.yaml is read from its run folder, where ``data.yaml`` would not
    resolve; and the fingerprint is the one ``seglit fit --config`` computes from it."""
    recipe, raw = recipe_with_data_file
    builder = ConfigBuilder()
    (plan, _) = plan_variants(recipe, recipe.variants(), tmp_path / "runs", {}, builder.resolve)
    data = yaml.safe_load((tmp_path / "data.yaml").read_text())
    assert plan.config["data"] == data
    assert Fingerprint.of(builder.resolve(plan.config)).digest == plan.fingerprint.digest


def test_a_missing_data_file_is_named(recipe_with_data_file, tmp_path):
    recipe, _ = recipe_with_data_file
    (tmp_path / "data.yaml").unlink()
    with pytest.raises(RecipeError, match=r"data: config file 'data.yaml' not found"):
        plan_variants(recipe, recipe.variants(), tmp_path / "runs", {}, ConfigBuilder().resolve)
