import pytest
import torch

from fluxai.config import AutoEncoderConfig, FluxConfig

torch.set_num_threads(2)


def randomize(module: torch.nn.Module, seed: int = 0, std: float = 0.05) -> torch.nn.Module:
    """Every parameter random (norm scales near 1), so no mapping mistake can hide behind a
    zero or a one."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            noise = torch.randn(p.shape, generator=gen) * std
            is_scale = name.endswith(("scale", "norm.weight", "norm1.weight", "norm2.weight",
                                      "norm_out.weight"))
            p.copy_(1.0 + noise if is_scale else noise)
    return module


@pytest.fixture
def tiny_flux_config() -> FluxConfig:
    return FluxConfig(in_channels=64, out_channels=64, vec_in_dim=32, context_in_dim=48,
                      hidden_size=64, num_heads=4, depth=2, depth_single_blocks=2,
                      axes_dim=(4, 6, 6), guidance_embed=True)


@pytest.fixture
def tiny_ae_config() -> AutoEncoderConfig:
    return AutoEncoderConfig(ch=32, ch_mult=(1, 2, 2, 2), num_res_blocks=1, z_channels=16)
