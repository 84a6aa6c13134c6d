"""The whole pipeline agrees with diffusers' FluxPipeline given the same transformer and
autoencoder weights, seed and prompt embeddings: final latents within 1e-4, images within
1/255. Covers the seed contract (noise drawn like diffusers), packing, position ids, the time
shift, guidance, true CFG and decoding."""

import numpy as np
import pytest
import torch
from reference_weights import load_seeded

from fluxai.checkpoints import save_autoencoder, save_transformer
from fluxai.config import AutoEncoderConfig, FluxConfig, SamplingDefaults
from fluxai.model.autoencoder import AutoEncoder
from fluxai.model.transformer import Flux
from fluxai.pipeline import FluxPipeline
from fluxai.text.hashed import HashedEncoder

diffusers = pytest.importorskip("diffusers")
SIZE = 64


def scheduler(shift: bool):
    # The scheduler configs of the FLUX.1-dev and FLUX.1-schnell releases.
    if shift:
        return diffusers.FlowMatchEulerDiscreteScheduler(
            shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
            base_image_seq_len=256, max_image_seq_len=4096)
    return diffusers.FlowMatchEulerDiscreteScheduler(shift=1.0, use_dynamic_shifting=False)


@pytest.fixture(scope="module")
def pipelines(tmp_path_factory):
    """Pairs (ours, diffusers') built once per variant: building diffusers' pipeline is slow."""
    built = {}

    def get(guidance: bool):
        if guidance not in built:
            built[guidance] = build(tmp_path_factory.mktemp("pipe"), guidance)
        return built[guidance]

    return get


def build(tmp_path, guidance: bool):
    cfg = FluxConfig(in_channels=64, out_channels=64, vec_in_dim=32, context_in_dim=48,
                     hidden_size=64, num_heads=4, depth=1, depth_single_blocks=2,
                     axes_dim=(4, 6, 6), guidance_embed=guidance)
    transformer = load_seeded(Flux(cfg), seed=31).eval()
    vae = load_seeded(AutoEncoder(AutoEncoderConfig(ch=32, ch_mult=(1, 2, 2, 2),
                                                    num_res_blocks=1)), seed=32).eval()
    ours = FluxPipeline(transformer, vae, HashedEncoder(), SamplingDefaults(shift=guidance))
    ours.set_progress_bar_config(disable=True)
    save_transformer(transformer, tmp_path / "transformer", layout="diffusers")
    save_autoencoder(vae, tmp_path / "vae", layout="diffusers")
    theirs = diffusers.FluxPipeline(
        scheduler=scheduler(shift=guidance),
        vae=diffusers.AutoencoderKL.from_pretrained(tmp_path / "vae"),
        transformer=diffusers.FluxTransformer2DModel.from_pretrained(tmp_path / "transformer"),
        text_encoder=None, tokenizer=None, text_encoder_2=None, tokenizer_2=None)
    theirs.set_progress_bar_config(disable=True)
    return ours, theirs


def embeddings(seed: int, batch: int = 1):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 6, 48, generator=gen), torch.randn(batch, 32, generator=gen)


CASES = {
    "dev": dict(guidance=True, kwargs=dict(guidance_scale=3.5, num_inference_steps=3)),
    "schnell": dict(guidance=False, kwargs=dict(guidance_scale=0.0, num_inference_steps=2)),
    "dev-true-cfg": dict(guidance=True, kwargs=dict(guidance_scale=2.0, num_inference_steps=2,
                                                    true_cfg_scale=3.0), negative=True),
    "dev-two-images": dict(guidance=True, kwargs=dict(guidance_scale=3.5, num_inference_steps=2,
                                                      num_images_per_prompt=2)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_pipeline_matches_diffusers_flux_pipeline(pipelines, case):
    spec = CASES[case]
    ours, theirs = pipelines(spec["guidance"])
    ctx, pooled = embeddings(7)
    common = dict(prompt_embeds=ctx, pooled_prompt_embeds=pooled, width=SIZE, height=SIZE,
                  **spec["kwargs"])
    if spec.get("negative"):
        neg_ctx, neg_pooled = embeddings(8)
        common.update(negative_prompt_embeds=neg_ctx, negative_pooled_prompt_embeds=neg_pooled)

    def gen():
        return torch.Generator().manual_seed(1234)

    with torch.no_grad():
        want_latents = theirs(generator=gen(), output_type="latent", **common).images
        want_images = theirs(generator=gen(), output_type="np", **common).images
    got_latents = ours(generator=gen(), output_type="latent", **common).images
    got_images = ours(generator=gen(), output_type="np", **common).images
    assert got_latents.shape == want_latents.shape
    assert (got_latents - want_latents).abs().max().item() <= 1e-4
    assert np.abs(got_images - want_images).max() <= 1 / 255
