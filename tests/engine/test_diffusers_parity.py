"""Our transformer and autoencoder compute what diffusers' classes compute on the same weights,
and a folder written by `save_*(layout="diffusers")` is one diffusers' own `from_pretrained`
loads: the comparison goes through that folder, so it checks the key mapping as well."""

import pytest
import torch
from reference_weights import load_seeded

from fluxai.checkpoints import save_autoencoder, save_transformer
from fluxai.config import AutoEncoderConfig, FluxConfig
from fluxai.model.autoencoder import AutoEncoder
from fluxai.model.transformer import Flux

diffusers = pytest.importorskip("diffusers")
TOLERANCE = 1e-5


def tiny_config(guidance: bool) -> FluxConfig:
    return FluxConfig(in_channels=64, out_channels=64, vec_in_dim=32, context_in_dim=48,
                      hidden_size=64, num_heads=4, depth=2, depth_single_blocks=2,
                      axes_dim=(4, 6, 6), guidance_embed=guidance)


def inputs(guidance: bool) -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(5)
    rows, cols = 4, 6
    ids = torch.zeros(rows, cols, 3)
    ids[..., 1] = torch.arange(rows)[:, None]
    ids[..., 2] = torch.arange(cols)[None, :]
    return {
        "img": torch.randn(2, rows * cols, 64, generator=gen),
        "img_ids": ids.reshape(1, -1, 3).repeat(2, 1, 1),
        "txt": torch.randn(2, 5, 48, generator=gen),
        "txt_ids": torch.zeros(2, 5, 3),
        "timesteps": torch.tensor([0.25, 0.8]),
        "y": torch.randn(2, 32, generator=gen),
        "guidance": torch.tensor([4.0, 1.5]) if guidance else None,
    }


@pytest.mark.parametrize("guidance", [True, False], ids=["dev", "schnell"])
def test_transformer_matches_diffusers_flux_transformer(tmp_path, guidance):
    ours = load_seeded(Flux(tiny_config(guidance)), seed=21).eval()
    save_transformer(ours, tmp_path / "transformer", layout="diffusers")
    theirs = diffusers.FluxTransformer2DModel.from_pretrained(tmp_path / "transformer").eval()
    x = inputs(guidance)
    with torch.no_grad():
        expected = theirs(hidden_states=x["img"], encoder_hidden_states=x["txt"],
                          pooled_projections=x["y"], timestep=x["timesteps"],
                          img_ids=x["img_ids"][0], txt_ids=x["txt_ids"][0],
                          guidance=x["guidance"], return_dict=False)[0]
        got = ours(x["img"], x["img_ids"], x["txt"], x["txt_ids"], x["timesteps"], x["y"],
                   x["guidance"])
    assert (got - expected).abs().max().item() <= TOLERANCE


@pytest.fixture(scope="module")
def autoencoders(tmp_path_factory):
    cfg = AutoEncoderConfig(ch=32, ch_mult=(1, 2, 2, 2), num_res_blocks=2, z_channels=16)
    ours = load_seeded(AutoEncoder(cfg), seed=22).eval()
    folder = tmp_path_factory.mktemp("ae") / "vae"
    save_autoencoder(ours, folder, layout="diffusers")
    return ours, diffusers.AutoencoderKL.from_pretrained(folder).eval()


def test_autoencoder_encode_matches_diffusers_autoencoder_kl(autoencoders):
    ours, theirs = autoencoders
    image = torch.rand(2, 3, 32, 48, generator=torch.Generator().manual_seed(3)) * 2 - 1
    with torch.no_grad():
        mean = theirs.encode(image).latent_dist.mean
        expected = (mean - theirs.config.shift_factor) * theirs.config.scaling_factor
        got = ours.encode(image)
    assert (got - expected).abs().max().item() <= TOLERANCE


def test_autoencoder_decode_matches_diffusers_autoencoder_kl(autoencoders):
    ours, theirs = autoencoders
    z = torch.randn(2, 16, 4, 6, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        expected = theirs.decode(z / theirs.config.scaling_factor
                                 + theirs.config.shift_factor).sample
        got = ours.decode(z)
    assert (got - expected).abs().max().item() <= TOLERANCE


def test_autoencoder_with_eight_norm_groups_matches_diffusers(tmp_path):
    cfg = AutoEncoderConfig(ch=32, ch_mult=(1, 2), num_res_blocks=1, z_channels=4, norm_groups=8)
    ours = load_seeded(AutoEncoder(cfg), seed=23).eval()
    save_autoencoder(ours, tmp_path / "vae", layout="diffusers")
    theirs = diffusers.AutoencoderKL.from_pretrained(tmp_path / "vae").eval()
    image = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(5)) * 2 - 1
    with torch.no_grad():
        expected = theirs.decode(theirs.encode(image).latent_dist.mean).sample
        got = ours.decoder(ours.encode_moments(image)[0])
    assert theirs.config.norm_num_groups == 8
    assert (got - expected).abs().max().item() <= TOLERANCE
