"""Our transformer and autoencoder compute what the official BFL code computes, on identical
random weights (fixtures made by fixtures/make_bfl_fixtures.py from the reference itself)."""

import json
from pathlib import Path

import pytest
import torch
from reference_weights import load_seeded
from safetensors import safe_open
from safetensors.torch import load_file

from fluxai.config import AutoEncoderConfig, FluxConfig
from fluxai.model.autoencoder import AutoEncoder
from fluxai.model.transformer import Flux

FIXTURES = Path(__file__).parent / "fixtures"
TOLERANCE = 1e-5


def fixture(name: str) -> tuple[dict[str, torch.Tensor], dict, int]:
    path = FIXTURES / name
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata()
    return load_file(path), json.loads(meta["config"]), int(meta["seed"])


@pytest.mark.parametrize("variant", ["dev", "schnell"])
def test_transformer_output_matches_the_bfl_reference(variant):
    data, config, seed = fixture(f"bfl_transformer_{variant}.safetensors")
    model = load_seeded(Flux(FluxConfig.from_dict(config)), seed).eval()
    with torch.no_grad():
        out = model(data["img"], data["img_ids"], data["txt"], data["txt_ids"],
                    data["timesteps"], data["y"], data.get("guidance"))
    # float32 round-off scales with the output (|max| ~4 here) and with the BLAS: AMX/AVX-512
    # machines sum in another order than the one that made the fixture.
    scale = max(1.0, data["output"].abs().max().item())
    assert (out - data["output"]).abs().max().item() <= TOLERANCE * scale


def test_transformer_fixture_is_sensitive_to_the_guidance_strength():
    # Guards the dev comparison above: a model ignoring guidance would not match by accident.
    data, config, seed = fixture("bfl_transformer_dev.safetensors")
    model = load_seeded(Flux(FluxConfig.from_dict(config)), seed).eval()
    with torch.no_grad():
        out = model(data["img"], data["img_ids"], data["txt"], data["txt_ids"],
                    data["timesteps"], data["y"], data["guidance"] + 1.0)
    assert (out - data["output"]).abs().max().item() > 100 * TOLERANCE


@pytest.fixture(scope="module")
def reference_ae():
    data, config, seed = fixture("bfl_autoencoder.safetensors")
    return data, load_seeded(AutoEncoder(AutoEncoderConfig.from_dict(config)), seed).eval()


def test_autoencoder_encode_matches_the_bfl_reference(reference_ae):
    data, ae = reference_ae
    with torch.no_grad():
        encoded = ae.encode(data["image"])
    assert (encoded - data["encoded"]).abs().max().item() <= TOLERANCE


def test_autoencoder_decode_matches_the_bfl_reference(reference_ae):
    data, ae = reference_ae
    with torch.no_grad():
        decoded = ae.decode(data["latent"])
    assert (decoded - data["decoded"]).abs().max().item() <= TOLERANCE
