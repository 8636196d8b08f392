from pathlib import Path

import pytest
import yaml

from seglit.recipe import RecipeError, deep_merge, load_recipe, parse_recipe

BASE = {
    "name": "abl",
    "trainer": {"max_epochs": 10},
    "model": {"net": {"class_path": "seglit.models.UNet", "init_args": {"base_width": 64}}},
    "data": {"class_path": "seglit.data.VOCDataModule", "init_args": {"root": "data/voc"}},
}


def recipe(**ablation):
    return {**BASE, "ablation": ablation}


def test_grid_expansion_names_and_configs():
    r = parse_recipe(
        recipe(
            **{
                "model.net.init_args.fusion": ["sum", "concat"],
                "model.net.init_args.depth": [4, 5],
            }
        )
    )
    variants = r.variants()
    assert [v.name for v in variants] == ["sum-4", "sum-5", "concat-4", "concat-5"]
    v = variants[2]
    assert v.config["model"]["net"]["init_args"] == {
        "base_width": 64,
        "fusion": "concat",
        "depth": 4,
    }
    assert v.overrides == {"model.net.init_args.fusion": "concat", "model.net.init_args.depth": 4}
    # The base config is never mutated by the expansion.
    assert "fusion" not in r.config["model"]["net"]["init_args"]


def test_only_runs_the_named_configs_and_smoke_can_narrow_them():
    axes = {"model.net.init_args.fusion": ["sum", "concat"], "model.net.init_args.depth": [4, 5]}
    r = parse_recipe(recipe(**axes, only=["concat-5", "sum-4"], seeds=[0, 1]))
    assert [v.name for v in r.variants()] == ["sum-4-s0", "sum-4-s1", "concat-5-s0", "concat-5-s1"]
    assert len(r.variants(respect_only=False)) == 8  # what --variant can name
    smoke = parse_recipe({**recipe(**axes), "smoke": {"ablation": {"only": ["sum-5"]}}}, smoke=True)
    assert [v.name for v in smoke.variants()] == ["sum-5"]
    with pytest.raises(RecipeError, match=r"ablation.only names \['sum-9'\].*'concat-5'"):
        parse_recipe(recipe(**axes, only=["sum-9"])).variants()
    with pytest.raises(RecipeError, match="baseline 'concat-5' is not a variant"):
        parse_recipe(recipe(**axes, only=["sum-4"], baseline="concat-5"))
    with pytest.raises(RecipeError, match="ablation.only must be a non-empty list"):
        parse_recipe(recipe(**axes, only="sum-4"))


def test_zip_mode_pairs_values_and_rejects_unequal_lengths():
    r = parse_recipe(
        recipe(
            **{
                "mode": "zip",
                "model.net.init_args.fusion": ["sum", "concat"],
                "model.net.init_args.depth": [4, 5],
            }
        )
    )
    assert [v.name for v in r.variants()] == ["sum-4", "concat-5"]
    with pytest.raises(RecipeError, match="different lengths"):
        parse_recipe(
            recipe(
                **{
                    "mode": "zip",
                    "model.net.init_args.fusion": ["sum", "concat"],
                    "trainer.max_epochs": [1],
                }
            )
        )


def test_seeds_multiply_variants_and_set_seed_everything():
    r = parse_recipe(
        recipe(**{"model.net.init_args.fusion": ["sum", "concat"], "seeds": [0, 1, 2]})
    )
    variants = r.variants()
    assert [v.name for v in variants] == [
        "sum-s0",
        "sum-s1",
        "sum-s2",
        "concat-s0",
        "concat-s1",
        "concat-s2",
    ]
    assert [v.config["seed_everything"] for v in variants[:3]] == [0, 1, 2]
    assert {v.group for v in variants} == {"sum", "concat"}
    assert r.baseline_group() == "sum"


def test_labelled_axis_values_and_readable_labels():
    r = parse_recipe(
        recipe(
            **{
                "model.net": {
                    "unet": {"class_path": "seglit.models.UNet"},
                    "fcn8s": {"class_path": "seglit.models.FCN8s"},
                },
                "model.net.init_args.atrous_rates": [[6, 12, 18], [12, 24, 36]],
                "model.net.init_args.image_pooling": [True, False],
                "baseline": "fcn8s-6_12_18-image_pooling",
            }
        )
    )
    names = [v.name for v in r.variants()]
    assert names[0] == "unet-6_12_18-image_pooling"
    assert "fcn8s-12_24_36-no_image_pooling" in names
    assert r.baseline_group() == "fcn8s-6_12_18-image_pooling"
    fcn = next(v for v in r.variants() if v.name.startswith("fcn8s"))
    assert fcn.config["model"]["net"]["class_path"] == "seglit.models.FCN8s"
    assert fcn.config["model"]["net"]["init_args"]["atrous_rates"] == [6, 12, 18]


def test_no_axes_gives_one_base_variant():
    assert [v.name for v in parse_recipe(recipe()).variants()] == ["base"]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({**BASE, "ablaton": {}}, "unknown top-level key 'ablaton'.*did you mean 'ablation'"),
        (recipe(seed=[0, 1]), "ablation.seed is neither.*did you mean 'seeds'"),
        (recipe(**{"modle.net.init_args.fusion": ["sum"]}), "modle.net.init_args.fusion"),
        (recipe(**{"model.net.init_args.fusion": []}), "has no values"),
        (recipe(**{"model.net.init_args.fusion": "sum"}), "must be a list"),
        (recipe(mode="product"), "ablation.mode must be one of"),
        (recipe(seeds=[0, "a"]), "seeds must be a non-empty list of ints"),
        (
            recipe(**{"model.net.init_args.fusion": ["sum"], "baseline": "concat"}),
            "baseline 'concat' is not a variant",
        ),
        ({**BASE, "name": "has space"}, "`name` must be"),
        (recipe(**{"model.net": [{"class_path": "x"}]}), "mapping value with no label"),
    ],
)
def test_bad_recipes_name_the_key(raw, message):
    with pytest.raises(RecipeError, match=message):
        parse_recipe(raw, "r.yaml").variants()


def test_smoke_block_merges_config_and_axis_values():
    raw = recipe(
        **{
            "model.net": {
                "unet": {"class_path": "seglit.models.UNet", "init_args": {"base_width": 64}},
                "fcn8s": {"class_path": "seglit.models.FCN8s", "init_args": {"backbone": "vgg16"}},
            },
            "seeds": [0, 1, 2],
        }
    )
    raw["smoke"] = {
        "ablation": {"seeds": [0], "model.net": {"unet": {"init_args": {"base_width": 8}}}},
        "trainer.max_epochs": 2,
        "data": {
            "class_path": "seglit.data.SyntheticVOCDataModule",
            "init_args": {"batch_size": 4},
        },
    }
    full = parse_recipe(raw)
    assert len(full.variants()) == 6
    smoke = parse_recipe(raw, smoke=True)
    variants = smoke.variants()
    assert [v.name for v in variants] == ["unet-s0", "fcn8s-s0"]
    assert variants[0].config["model"]["net"]["init_args"] == {"base_width": 8}
    assert variants[1].config["model"]["net"]["init_args"] == {"backbone": "vgg16"}
    assert variants[0].config["trainer"]["max_epochs"] == 2
    # A different class_path replaces the data block instead of mixing init_args.
    assert variants[0].config["data"] == {
        "class_path": "seglit.data.SyntheticVOCDataModule",
        "init_args": {"batch_size": 4},
    }


def test_smoke_block_typos_are_errors():
    raw = {**recipe(), "smoke": {"trainr.max_epochs": 1}}
    with pytest.raises(RecipeError, match="smoke.trainr is not a config key.*'trainer'"):
        parse_recipe(raw, smoke=True)
    raw = {
        **recipe(**{"model.net": {"unet": {}}}),
        "smoke": {"ablation": {"model.net": {"unte": {}}}},
    }
    with pytest.raises(RecipeError, match="unte"):
        parse_recipe(raw, smoke=True)


def test_deep_merge_rules():
    base = {"a": {"b": 1, "c": [1, 2]}, "d": {"class_path": "X", "init_args": {"k": 1}}}
    merged = deep_merge(base, {"a": {"c": [3]}, "d": {"class_path": "Y"}})
    assert merged == {"a": {"b": 1, "c": [3]}, "d": {"class_path": "Y"}}
    assert base["a"]["c"] == [1, 2]


def test_load_recipe_errors(tmp_path: Path):
    with pytest.raises(RecipeError, match="not found"):
        load_recipe(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(bad)


@pytest.mark.parametrize("path", sorted(Path(__file__).parents[1].glob("recipes/*.yaml")))
def test_shipped_recipes_expand(path: Path):
    raw = yaml.safe_load(path.read_text())
    for smoke in (False, True):
        variants = parse_recipe(raw, path, smoke=smoke).variants()
        assert variants and len({v.name for v in variants}) == len(variants)


RECIPES = Path(__file__).parents[1] / "recipes"
ABLATIONS = [*sorted(RECIPES.glob("ablation_*.yaml")), RECIPES / "compare_smp.yaml"]


@pytest.mark.parametrize("path", ABLATIONS, ids=lambda p: p.stem)
def test_shipped_ablations_smoke_every_config_with_three_seeds(path: Path):
    variants = load_recipe(path, smoke=True).variants()
    groups = {v.group for v in variants}
    assert {v.seed for v in variants} == {0, 1, 2}
    assert len(variants) == 3 * len(groups)


def test_the_crf_ablation_compares_no_crf_with_several_kernels():
    variants = load_recipe(RECIPES / "ablation_crf.yaml", smoke=True).variants()
    settings = {v.group: v.config["model"]["inference"] for v in variants}
    assert settings.pop("crf-off")["crf"] is False
    assert all(s["crf"] is True for s in settings.values())
    kernels = {(s["crf_bilateral_sxy"], s["crf_bilateral_srgb"]) for s in settings.values()}
    assert len(kernels) == len(settings) >= 2
    # DeepLab v1 LargeFOV's values (deeplab-public) and DeepLab v2's VOC values.
    assert {(121.0, 5.0), (67.0, 3.0)} <= kernels
