"""`FluxPipeline`'s diffusers-named LoRA methods, end to end on a small random model."""

import pytest
import torch
from lora_helpers import images, small_pipe
from safetensors.torch import save_file

from fluxai.lora import LoraError

H = 64


@pytest.fixture
def pipe():
    return small_pipe()


def lora_file(tmp_path, seed, name="l.safetensors"):
    g = torch.Generator().manual_seed(seed)
    sd = {"transformer.single_transformer_blocks.0.attn.to_v.lora_A.weight":
          torch.randn(4, H, generator=g),
          "transformer.single_transformer_blocks.0.attn.to_v.lora_B.weight":
          torch.randn(H, 4, generator=g)}
    save_file(sd, tmp_path / name)
    return tmp_path / name


def test_load_set_fuse_unfuse_unload_round_trip(pipe, tmp_path):
    base = images(pipe)
    pipe.load_lora_weights(str(lora_file(tmp_path, 1)), adapter_name="one")
    assert pipe.get_active_adapters() == ["one"]
    full = images(pipe)
    pipe.set_adapters(["one"], adapter_weights=[0.5])
    half = images(pipe)
    pipe.fuse_lora(lora_scale=2.0)  # 0.5 * 2.0: the full LoRA, now in the weights
    assert torch.allclose(images(pipe), full, atol=1e-4)
    pipe.unfuse_lora()
    assert torch.allclose(images(pipe), half, atol=1e-6)
    pipe.unload_lora_weights()
    assert pipe.get_active_adapters() == []
    assert torch.equal(images(pipe), base)
    assert not torch.allclose(full, base, atol=1e-3)


def test_load_from_a_folder_with_weight_name(pipe, tmp_path):
    lora_file(tmp_path, 1, "style.safetensors")
    pipe.load_lora_weights(str(tmp_path), weight_name="style.safetensors", adapter_name="s")
    assert pipe.get_list_adapters() == {"transformer": ["s"]}


def test_changing_adapters_while_fused_is_refused(pipe, tmp_path):
    pipe.load_lora_weights(str(lora_file(tmp_path, 1)), adapter_name="one")
    pipe.fuse_lora()
    with pytest.raises(LoraError, match="unfuse_lora"):
        pipe.set_adapters(["one"], [0.3])


def test_a_missing_file_is_a_clear_error(pipe, tmp_path):
    with pytest.raises(FileNotFoundError, match="LoRA file not found"):
        pipe.load_lora_weights(str(tmp_path / "nope.safetensors"))
