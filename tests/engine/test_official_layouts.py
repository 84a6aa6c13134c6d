"""Full-size FLUX.1 layouts, checked on the meta device (no memory): our modules have exactly
the official BFL parameter names and shapes (recorded from the BFL classes by
fixtures/make_bfl_fixtures.py), our diffusers names are exactly diffusers' own, and the configs
inferred from those shapes are the presets."""

import json
from pathlib import Path

import pytest
import torch

from fluxai.checkpoints.diffusers_keys import AUTOENCODER_KEYS, TRANSFORMER_KEYS, split_sizes
from fluxai.checkpoints.infer import infer_autoencoder_config, infer_flux_config
from fluxai.config import PRESETS, AutoEncoderConfig
from fluxai.model.autoencoder import AutoEncoder
from fluxai.model.transformer import Flux, count_parameters

OFFICIAL = json.loads((Path(__file__).parent / "fixtures" / "official_layouts.json").read_text())


def meta_shapes(module_factory) -> dict[str, list[int]]:
    with torch.device("meta"):
        module = module_factory()
    return {k: list(v.shape) for k, v in module.state_dict().items()}


def to_diffusers(shapes: dict[str, list[int]], keymap, levels=0, hidden=None):
    out = {}
    for key, shape in shapes.items():
        part = keymap.to_diffusers(key, levels)
        assert part is not None, key
        if part.conv1x1:
            shape = shape[:2]
        for name, rows in zip(part.sources, split_sizes(part, shape[0], hidden), strict=True):
            out[name] = [rows, *shape[1:]]
    return out


@pytest.mark.parametrize("name", ["flux-dev", "flux-schnell"])
def test_transformer_has_the_official_bfl_names_and_shapes(name):
    ours = meta_shapes(lambda: Flux(PRESETS[name].transformer))
    assert ours == OFFICIAL[name]


def test_autoencoder_has_the_official_bfl_names_and_shapes():
    assert meta_shapes(lambda: AutoEncoder(AutoEncoderConfig())) == OFFICIAL["autoencoder"]


@pytest.mark.parametrize("name", ["flux-dev", "flux-schnell"])
def test_config_inferred_from_the_official_shapes_is_the_preset(name):
    shapes = {k: tuple(v) for k, v in OFFICIAL[name].items()}
    assert infer_flux_config(shapes) == PRESETS[name].transformer


def test_autoencoder_config_inferred_from_the_official_shapes_is_flux_s():
    shapes = {k: tuple(v) for k, v in OFFICIAL["autoencoder"].items()}
    assert infer_autoencoder_config(shapes) == AutoEncoderConfig()


def test_parameter_counts_are_the_published_ones():
    assert count_parameters(PRESETS["flux-dev"].transformer) == 11_901_408_320
    assert count_parameters(PRESETS["flux-schnell"].transformer) == 11_891_178_560


@pytest.mark.parametrize("guidance", [True, False], ids=["dev", "schnell"])
def test_diffusers_names_of_the_official_transformer_are_diffusers_own(guidance):
    diffusers = pytest.importorskip("diffusers")
    theirs = meta_shapes(lambda: diffusers.FluxTransformer2DModel(guidance_embeds=guidance))
    official = OFFICIAL["flux-dev" if guidance else "flux-schnell"]
    assert to_diffusers(official, TRANSFORMER_KEYS, hidden=3072) == theirs


def test_diffusers_names_of_the_official_autoencoder_are_diffusers_own():
    diffusers = pytest.importorskip("diffusers")
    theirs = meta_shapes(lambda: diffusers.AutoencoderKL(
        down_block_types=["DownEncoderBlock2D"] * 4, up_block_types=["UpDecoderBlock2D"] * 4,
        block_out_channels=[128, 256, 512, 512], layers_per_block=2, latent_channels=16,
        use_quant_conv=False, use_post_quant_conv=False))
    assert to_diffusers(OFFICIAL["autoencoder"], AUTOENCODER_KEYS, levels=4) == theirs


def test_every_diffusers_name_maps_back_to_the_bfl_name_it_came_from():
    for key in OFFICIAL["flux-dev"]:
        part = TRANSFORMER_KEYS.to_diffusers(key)
        for pos, name in enumerate(part.sources):
            back, back_pos = TRANSFORMER_KEYS.from_diffusers(name)
            assert (back.bfl, back_pos) == (key, pos), name
    for key in OFFICIAL["autoencoder"]:
        for name in AUTOENCODER_KEYS.to_diffusers(key, levels=4).sources:
            assert AUTOENCODER_KEYS.from_diffusers(name, levels=4)[0].bfl == key
