"""`FluxPipeline.from_pretrained` / `from_single_file` on checkpoints in each supported form give
the pipeline that the same weights give in memory."""

import json

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

CALL = dict(prompt="a red star", width=32, height=32, num_inference_steps=2, guidance_scale=3.0,
            seed=5, output_type="np")


@pytest.fixture(scope="module")
def parts():
    cfg = FluxConfig(in_channels=64, out_channels=64, vec_in_dim=32, context_in_dim=48,
                     hidden_size=64, num_heads=4, depth=1, depth_single_blocks=1,
                     axes_dim=(4, 6, 6))
    transformer = load_seeded(Flux(cfg), seed=61).eval()
    vae = load_seeded(AutoEncoder(AutoEncoderConfig(ch=32, ch_mult=(1, 2, 2, 2),
                                                    num_res_blocks=1)), seed=62).eval()
    return transformer, vae


def images(pipe: FluxPipeline) -> np.ndarray:
    pipe.set_progress_bar_config(disable=True)
    return pipe(**CALL).images


@pytest.fixture(scope="module")
def expected(parts):
    return images(FluxPipeline(*parts, HashedEncoder(), SamplingDefaults(shift=False)))


def test_our_model_folder_loads_with_its_recorded_text_encoder_and_defaults(parts, expected,
                                                                            tmp_path):
    transformer, vae = parts
    record = {"name": "mine", "text_encoder": "random", "sampling": {"shift": False}}
    save_transformer(transformer, tmp_path / "transformer.safetensors",
                     metadata={"fluxai_model": json.dumps(record)})
    save_autoencoder(vae, tmp_path / "ae.safetensors")
    pipe = FluxPipeline.from_pretrained(tmp_path)
    assert pipe.name == "mine" and pipe.defaults.shift is False
    assert np.allclose(images(pipe), expected, atol=1e-5)


def test_single_file_loads_with_the_parts_given(parts, expected, tmp_path):
    transformer, vae = parts
    save_transformer(transformer, tmp_path / "flux.safetensors")
    save_autoencoder(vae, tmp_path / "ae.safetensors")
    pipe = FluxPipeline.from_single_file(tmp_path / "flux.safetensors",
                                         vae=tmp_path / "ae.safetensors",
                                         text_encoder=HashedEncoder())
    pipe.defaults = SamplingDefaults(shift=False)
    assert np.allclose(images(pipe), expected, atol=1e-5)


def test_diffusers_pipeline_folder_loads_transformer_and_vae(parts, expected, tmp_path,
                                                             monkeypatch):
    # The T5/CLIP encoders are real transformers models that cannot be downloaded here; the
    # folder's text encoders are replaced, everything else is read from the folder.
    import fluxai.text.t5clip as t5clip

    transformer, vae = parts
    save_transformer(transformer, tmp_path / "transformer", layout="diffusers")
    save_autoencoder(vae, tmp_path / "vae", layout="diffusers")
    (tmp_path / "model_index.json").write_text(json.dumps({"_class_name": "FluxPipeline"}))
    monkeypatch.setattr(t5clip, "T5ClipEncoder", lambda **_: HashedEncoder())
    pipe = FluxPipeline.from_pretrained(tmp_path, torch_dtype=torch.float32)
    pipe.defaults = SamplingDefaults(shift=False)
    assert np.allclose(images(pipe), expected, atol=1e-5)
