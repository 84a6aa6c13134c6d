import importlib.util

import pytest
import torch

from fluxai.config import PRESETS
from fluxai.model.transformer import Flux
from fluxai.perf.quantize import check_mode, quantize_transformer, quantized_bytes
from fluxai.sampling import image_ids, text_ids

torchao = pytest.importorskip("torchao")


def model_and_inputs():
    torch.manual_seed(0)
    # Width a multiple of 128 so every Linear has int8 kernels' friendly shapes.
    config = PRESETS["flux-mid"].transformer
    model = Flux(config).eval()
    gen = torch.Generator().manual_seed(1)
    x = (torch.randn(1, 16, 64, generator=gen), image_ids(8, 8, 1, "cpu"),
         torch.randn(1, 8, 512, generator=gen), text_ids(1, 8, "cpu"), torch.tensor([0.7]),
         torch.randn(1, 256, generator=gen), torch.tensor([3.5]))
    return model, x


@pytest.mark.parametrize("mode", ["int8wo", "int8dq"])
def test_int8_modes_stay_close_to_full_precision_and_shrink_the_blocks(mode):
    model, x = model_and_inputs()
    with torch.no_grad():
        expected = model(*x)
        before = quantized_bytes(model)
        quantize_transformer(model, mode)
        got = model(*x)
    assert quantized_bytes(model) < 0.4 * before  # int8 blocks: ~1/4 of fp32
    rel = (got - expected).norm() / expected.norm()
    assert rel < 0.05


def test_embedders_and_final_layer_stay_in_full_precision():
    model, _ = model_and_inputs()
    quantize_transformer(model, "int8wo")
    assert type(model.img_in.weight) is torch.nn.Parameter
    assert type(model.final_layer.linear.weight) is torch.nn.Parameter
    assert type(model.double_blocks[0].img_attn.qkv.weight) is not torch.nn.Parameter


def test_unknown_mode_names_the_allowed_ones():
    with pytest.raises(ValueError, match=r"unknown quantization mode 'int3'.*int8wo"):
        check_mode("int3", "cpu")


@pytest.mark.parametrize("mode", ["fp8wo", "int4wo", "nf4"])
def test_gpu_only_modes_are_refused_on_cpu_with_the_cpu_alternatives(mode):
    with pytest.raises(ValueError, match=f"--quantize {mode} runs on CUDA GPUs only.*int8wo"):
        check_mode(mode, "cpu")


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is not None,
                    reason="bitsandbytes is installed")
@pytest.mark.skipif(not torch.cuda.is_available(), reason="nf4 is checked on CUDA only")
def test_nf4_without_bitsandbytes_says_how_to_install_it():
    with pytest.raises(ImportError, match=r"pip install 'fluxai\[perf\]'"):
        check_mode("nf4", "cuda")
