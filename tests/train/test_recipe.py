from dataclasses import replace
from pathlib import Path

import pytest

from fluxai.train.config import TrainConfig, load_train_config
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
