from dataclasses import replace
from pathlib import Path

from fluxai.train.config import TrainConfig, load_train_config

RECIPE = Path(__file__).parents[2] / "configs" / "flux-tiny.toml"


def test_the_defaults_are_the_flux_tiny_recipe():
    recipe = load_train_config(RECIPE)
    # Where a run writes and how many threads it takes are the machine's business.
    recipe = replace(recipe, threads=0, output=replace(recipe.output, dir=TrainConfig().output.dir))
    assert recipe == TrainConfig()
