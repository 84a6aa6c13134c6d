"""A LoRA we save loads into diffusers' own FluxTransformer2DModel and changes its output
exactly as it changes ours (identical random base weights)."""

import pytest
import torch
from lora_helpers import CONFIG, model_inputs, rand, random_model

from fluxai.checkpoints import save_transformer
from fluxai.lora import LoraAdapters, save_lora
from fluxai.lora.targets import linear_modules

diffusers = pytest.importorskip("diffusers")
pytest.importorskip("peft")


def diffusers_forward(model, x):
    with torch.no_grad():
        return model(hidden_states=x["img"], encoder_hidden_states=x["txt"],
                     pooled_projections=x["y"], timestep=x["timesteps"], img_ids=x["img_ids"][0],
                     txt_ids=x["txt_ids"][0], guidance=x["guidance"], return_dict=False)[0]


def test_saved_lora_gives_diffusers_the_same_output_as_ours(tmp_path):
    ours = random_model()
    save_transformer(ours, tmp_path / "transformer", layout="diffusers")
    theirs = diffusers.FluxTransformer2DModel.from_pretrained(tmp_path / "transformer").eval()
    x = model_inputs()
    base = diffusers_forward(theirs, x)
    with torch.no_grad():
        assert (ours(**x) - base).abs().max() < 1e-4  # same base model before any LoRA

    lora = LoraAdapters(ours)
    params = lora.add_trainable("t", linear_modules(CONFIG), rank=4, alpha=8.0)
    with torch.no_grad():
        for i, p in enumerate(params):
            p.copy_(rand(*p.shape, seed=i) * 0.1)
    path = save_lora(lora.state("t"), tmp_path / "lora.safetensors", lora.table)

    pipe = diffusers.FluxPipeline(scheduler=None, vae=None, text_encoder=None, tokenizer=None,
                                  text_encoder_2=None, tokenizer_2=None, transformer=theirs)
    pipe.load_lora_weights(str(path), adapter_name="t")
    with torch.no_grad():
        expected = ours(**x)
    got = diffusers_forward(theirs, x)
    assert (expected - base).abs().max() > 0.05  # the LoRA changes the output...
    assert (got - expected).abs().max() < 1e-4  # ...identically in both


def test_diffusers_loads_the_transformer_part_of_a_lora_that_also_adapts_the_decoder(tmp_path):
    from fluxai.config import AutoEncoderConfig
    from fluxai.model.autoencoder import AutoEncoder

    ours = random_model()
    save_transformer(ours, tmp_path / "transformer", layout="diffusers")
    theirs = diffusers.FluxTransformer2DModel.from_pretrained(tmp_path / "transformer").eval()
    vae = AutoEncoder(AutoEncoderConfig(ch=32, ch_mult=(1, 2), num_res_blocks=1, z_channels=4))
    lora = LoraAdapters(ours, vae)
    linear = lora.add_trainable("t", ["double_blocks.0.img_attn.qkv"], rank=4, alpha=4.0)
    conv = lora.add_trainable("t", list(lora.table.convs), rank=2, alpha=2.0)
    with torch.no_grad():
        for i, p in enumerate(linear + conv):
            p.copy_(rand(*p.shape, seed=i) * 0.1)
    path = save_lora(lora.state("t"), tmp_path / "lora.safetensors", lora.table)

    pipe = diffusers.FluxPipeline(scheduler=None, vae=None, text_encoder=None, tokenizer=None,
                                  text_encoder_2=None, tokenizer_2=None, transformer=theirs)
    pipe.load_lora_weights(str(path), adapter_name="t")
    x = model_inputs()
    with torch.no_grad():
        expected = ours(**x)
    assert (diffusers_forward(theirs, x) - expected).abs().max() < 1e-4
