"""Shared by the LoRA tests: a small random model and a LoRA's summed update per layer."""

from __future__ import annotations

import torch
from torch import Tensor

from fluxai.config import FluxConfig
from fluxai.lora.state import LoraState
from fluxai.model.transformer import Flux

CONFIG = FluxConfig(in_channels=16, out_channels=16, vec_in_dim=32, context_in_dim=48,
                    hidden_size=64, num_heads=4, depth=2, depth_single_blocks=2,
                    axes_dim=(4, 6, 6), guidance_embed=True)
H, MLP = CONFIG.hidden_size, CONFIG.mlp_hidden_dim


def random_model(seed: int = 0) -> Flux:
    torch.manual_seed(seed)
    model = Flux(CONFIG).eval()
    gen = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for p in model.parameters():  # nothing left at zero, so no mapping mistake can hide
            p.copy_(torch.randn(p.shape, generator=gen) * 0.05 + (1.0 if p.ndim == 1 and
                                                                   p.shape[0] == 16 else 0))
    return model


def model_inputs(seed: int = 0, batch: int = 1) -> dict[str, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    img_tokens, txt_tokens = 16, 8
    ids = torch.zeros(batch, img_tokens, 3)
    ids[..., 1] = torch.arange(img_tokens).div(4, rounding_mode="floor").float()
    ids[..., 2] = (torch.arange(img_tokens) % 4).float()
    return {
        "img": torch.randn(batch, img_tokens, CONFIG.in_channels, generator=gen),
        "img_ids": ids,
        "txt": torch.randn(batch, txt_tokens, CONFIG.context_in_dim, generator=gen),
        "txt_ids": torch.zeros(batch, txt_tokens, 3),
        "timesteps": torch.full((batch,), 0.7),
        "y": torch.randn(batch, CONFIG.vec_in_dim, generator=gen),
        "guidance": torch.full((batch,), 3.5),
    }


def rand(*shape: int, seed: int) -> Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def deltas(state: LoraState) -> dict[str, Tensor]:
    """The summed weight update each BFL layer receives, as full (out, in) matrices."""
    from fluxai.lora.targets import linear_modules

    shapes = linear_modules(CONFIG)
    out: dict[str, Tensor] = {}
    for part in state.parts:
        fan_in, rows = shapes[part.module]
        d = out.setdefault(part.module, torch.zeros(rows, fan_in))
        d[part.rows[0]:part.rows[1]] += part.delta_weight()
    return out


def small_pipe():
    """flux-test-dev with random weights, quiet."""
    from fluxai.pipeline import FluxPipeline
    from fluxai.registry import random_preset

    pipe = FluxPipeline(**random_preset("flux-test-dev"))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def images(pipe) -> Tensor:
    """A fixed two-step 32x32 generation, as a tensor."""
    return pipe("a red star", seed=2, num_inference_steps=2, width=32, height=32,
                output_type="pt").images
