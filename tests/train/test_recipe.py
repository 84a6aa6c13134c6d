from dataclasses import replace
from pathlib import Path

import pytest

from fluxai.train.config import TrainConfig, load_train_config, parse_override
from fluxai.train.run import initial_weights

RECIPE = Path(__file__).parents[2] / "configs" / "flux-tiny.toml"


def test_the_defaults_are_the_flux_tiny_recipe():
    recipe = load_train_config(RECIPE)
    # Where a run writes and how many threads it takes are the machine's business.
    recipe = replace(recipe, threads=0, output=replace(recipe.output, dir=TrainConfig().output.dir))
    assert recipe == TrainConfig()


@pytest.mark.parametrize("path", sorted(RECIPE.parent.glob("*.toml")), ids=lambda p: p.name)
def test_every_committed_recipe_loads_and_fits_its_init_model(path):
    recipe = load_train_config(path)
    if recipe.init:  # raises unless the shipped weights it continues from fit its shapes
        initial_weights(recipe)


def test_an_override_is_a_nested_table_with_a_toml_value():
    assert parse_override("flow_train.exchange_weight=0.3") == {
        "flow_train": {"exchange_weight": 0.3}}
    assert parse_override("flow_train.kind_weights={ position = 2.0 }") == {
        "flow_train": {"kind_weights": {"position": 2.0}}}
    assert parse_override("init_flow=false") == {"init_flow": False}


def test_an_override_value_that_is_not_toml_is_a_string():
    assert parse_override("init=runs/x/model") == {"init": "runs/x/model"}


def test_overrides_apply_over_the_recipe_file():
    recipe = load_train_config(RECIPE, ["flow_train.lr=1e-3", "data.layout=canonical"])
    assert recipe.flow_train.lr == 1e-3 and recipe.data.layout == "canonical"
    assert recipe.flow_train.steps == load_train_config(RECIPE).flow_train.steps


@pytest.mark.parametrize("text", ["flow_train.lr", "=3", "flow_train..lr=3"])
def test_an_override_without_a_key_and_value_is_refused(text):
    with pytest.raises(ValueError, match=r"section\.key=value"):
        parse_override(text)


def test_an_override_is_validated_like_the_file():
    with pytest.raises(ValueError, match=r"unknown key flow_train\.'lrr'"):
        load_train_config(RECIPE, ["flow_train.lrr=1"])
    with pytest.raises(ValueError, match="max_minutes must be >= 0"):
        load_train_config(RECIPE, ["flow_train.max_minutes=-1"])
