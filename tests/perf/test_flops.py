import torch
from torch.utils.flop_counter import FlopCounterMode

from fluxai.config import PRESETS
from fluxai.model.transformer import Flux
from fluxai.perf.flops import gpu_peak_tflops, transformer_flops
from fluxai.sampling import image_ids, text_ids


def test_linear_flops_match_what_torch_counts_for_a_real_forward():
    config = PRESETS["flux-test-dev"].transformer
    model = Flux(config).eval()
    batch, rows, cols, text = 2, 4, 6, 7
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.randn(batch, rows * cols, 64), image_ids(2 * rows, 2 * cols, batch, "cpu"),
              torch.randn(batch, text, 48), text_ids(batch, text, "cpu"), torch.rand(batch),
              torch.randn(batch, 32), torch.rand(batch))
    # torch's counter has no formula for CPU attention kernels: compare the Linear part.
    assert transformer_flops(config, rows * cols, text, batch).linear == \
        counter.get_total_flops()


def test_attention_flops_grow_with_the_square_of_the_sequence():
    config = PRESETS["flux-dev"].transformer
    short = transformer_flops(config, 1024, 512).attention
    long = transformer_flops(config, 3584, 512).attention
    assert long == short * (4096 / 1536) ** 2


def test_flux_dev_at_1024_costs_about_74_tflop_per_step():
    step = transformer_flops(PRESETS["flux-dev"].transformer, 4096, 512)
    assert 74e12 < step.total < 75e12


def test_peak_lookup_prefers_the_most_specific_name():
    assert gpu_peak_tflops("NVIDIA H100 80GB HBM3") == 989.4
    assert gpu_peak_tflops("NVIDIA A10G") == 70.0
    assert gpu_peak_tflops("NVIDIA H100 PCIe") == 756.0
    assert gpu_peak_tflops("Some Unknown Accelerator") is None
