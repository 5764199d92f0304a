"""Recipe schema: strict validation, overrides, packaged recipes, TOML round trip."""

from __future__ import annotations

import tomllib

import pytest

from spikeforge.develop.config import DevelopConfig
from spikeforge.hybrid.config import HybridConfig
from spikeforge.train.recipe import (
    Recipe,
    RecipeError,
    load_recipe,
    packaged_recipes,
    parse_override,
    recipe_from_dict,
    to_toml,
)


def test_packaged_recipes_all_load() -> None:
    names = packaged_recipes()
    for required in ("mnist-sdsnn", "cifar10-resnet19", "cifar100-resnet19", "imagenet-resnet34", "cifar10-convnet"):
        assert required in names
    for name in names:
        r = load_recipe(name)
        assert isinstance(r, Recipe) and r.name == name


def test_unknown_key_names_its_path() -> None:
    with pytest.raises(RecipeError, match=r"train\.optimizer\.bogus: unknown key"):
        load_recipe("mnist-sdsnn", ["train.optimizer.bogus=1"])


def test_wrong_type_names_path_and_expected_type() -> None:
    with pytest.raises(RecipeError, match=r"train\.epochs: expected int, got str"):
        load_recipe("mnist-sdsnn", ['train.epochs="ten"'])
    with pytest.raises(RecipeError, match=r"model\.neuron\.threshold: expected float, got bool"):
        recipe_from_dict({"model": {"neuron": {"threshold": True}}})
    with pytest.raises(RecipeError, match=r"data: expected a table"):
        recipe_from_dict({"data": 3})


def test_overrides_parse_toml_values() -> None:
    assert parse_override("train.optimizer.lr=0.05") == ("train.optimizer.lr", 0.05)
    assert parse_override("model.name=resnet19") == ("model.name", "resnet19")
    assert parse_override("train.optimizer.betas=[0.8, 0.9]") == ("train.optimizer.betas", [0.8, 0.9])
    r = load_recipe("cifar10-resnet19", ["train.epochs=2", "model.width=0.25", "model.residual=sew"])
    assert (r.train.epochs, r.model.width, r.model.residual) == (2, 0.25, "sew")
    with pytest.raises(RecipeError, match="KEY=VALUE"):
        parse_override("novalue")


def test_int_accepted_for_float_and_optional_sections() -> None:
    r = recipe_from_dict({"train": {"optimizer": {"lr": 1}}, "hybrid": {"sites": "last:1"}})
    assert r.train.optimizer.lr == 1.0 and isinstance(r.train.optimizer.lr, float)
    hybrid = r.section(HybridConfig)
    assert hybrid is not None and hybrid.sites == "last:1" and r.methods == {"hybrid": hybrid}
    assert r.section(DevelopConfig) is None


def test_toml_round_trip(tmp_path) -> None:
    r = load_recipe("mnist-sdsnn", ["train.epochs=3"])
    text = to_toml(r)
    again = recipe_from_dict(tomllib.loads(text))
    assert again == r
    f = tmp_path / "mine.toml"
    f.write_text(text)
    assert load_recipe(str(f)) == r


def test_unknown_recipe_and_missing_file(tmp_path) -> None:
    with pytest.raises(RecipeError, match="unknown recipe"):
        load_recipe("no-such-recipe")
    with pytest.raises(RecipeError, match="does not exist"):
        load_recipe(str(tmp_path / "absent.toml"))
    bad = tmp_path / "bad.toml"
    bad.write_text("[model\n")
    with pytest.raises(RecipeError, match="invalid TOML"):
        load_recipe(str(bad))
