"""Memory presets: one word for a combination of offload and VAE tricks, and OOM advice.

| preset   | transformer            | VAE                         | text encoder |
|----------|------------------------|-----------------------------|--------------|
| max      | resident on the device | resident                    | device       |
| balanced | parts take turns       | parts take turns, slicing   | host (CPU)   |
| low      | block offload          | takes turns, slicing        | host (CPU)   |
| 8gb      | block offload          | takes turns, slicing+tiling | host (CPU)   |

None of them changes the numbers except the 8gb preset's VAE tiling (seams within ~1/255 at the
default tile size); quantization is a separate choice (`--quantize`), because it does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from fluxai.config import AutoEncoderConfig, FluxConfig
from fluxai.model.transformer import count_parameters

if TYPE_CHECKING:
    from fluxai.pipeline import FluxPipeline

GiB = 1024**3


@dataclass(frozen=True)
class MemoryPreset:
    name: str
    offload: str  # "none" | "model" | "block"
    vae_slicing: bool = False
    vae_tiling: bool = False


PRESETS: dict[str, MemoryPreset] = {p.name: p for p in (
    MemoryPreset("max", "none"),
    MemoryPreset("balanced", "model", vae_slicing=True),
    MemoryPreset("low", "block", vae_slicing=True),
    MemoryPreset("8gb", "block", vae_slicing=True, vae_tiling=True),
)}
ORDER = ("max", "balanced", "low", "8gb")  # most resident (fastest) first


def get_memory_preset(name: str) -> MemoryPreset:
    if name not in PRESETS:
        raise ValueError(f"unknown memory preset {name!r}; choose one of {', '.join(ORDER)}")
    return PRESETS[name]


def apply_memory_preset(pipe: FluxPipeline, name: str, device: torch.device | str) -> None:
    """Place `pipe`'s parts on `device` (or in host memory) the way the preset says."""
    from fluxai.perf.offload import BlockOffload, ModelOffload
    from fluxai.perf.vae import enable_vae_slicing, enable_vae_tiling

    preset = get_memory_preset(name)
    device = torch.device(device)
    if preset.offload == "none":
        pipe.to(device)
        return
    pipe.text_encoder.to("cpu")
    if preset.offload == "model":
        pipe._offload = ModelOffload([pipe.transformer, pipe.vae.encoder, pipe.vae.decoder],
                                     device)
    else:
        pipe._offload = (BlockOffload(pipe.transformer, device),
                         ModelOffload([pipe.vae.encoder, pipe.vae.decoder], device))
    if preset.vae_tiling:
        enable_vae_tiling(pipe.vae)
    if preset.vae_slicing:
        enable_vae_slicing(pipe.vae)


def estimate_peak_bytes(config: FluxConfig, ae: AutoEncoderConfig, preset: str, width: int,
                        height: int, batch: int = 1, bytes_per_param: float = 2.0,
                        text_tokens: int = 512) -> int:
    """A planning estimate of peak device memory (weights + the largest activations)."""
    p = get_memory_preset(preset)
    h, s = config.hidden_size, (width // 16) * (height // 16) + text_tokens
    blocks = config.depth + config.depth_single_blocks
    total = count_parameters(config) * bytes_per_param
    per_block = total / blocks  # double blocks are bigger; averaging errs small, hence 2 below
    # Activations of the biggest block: a handful of (S, mlp) and (S, 3h) tensors in flight.
    act = batch * s * (config.mlp_hidden_dim + 4 * h) * 4 * bytes_per_param
    # The VAE decoder's first full-resolution feature maps dominate its peak.
    ch = ae.ch * ae.ch_mult[0]
    side = min(width, 512) if p.vae_tiling else width
    side_h = min(height, 512) if p.vae_tiling else height
    vae_act = (1 if p.vae_slicing else batch) * ch * side * side_h * 4 * bytes_per_param
    if p.offload == "none":
        return int(total + 200e6 + max(act, vae_act))  # + VAE weights
    if p.offload == "model":
        return int(max(total + act, 200e6 + vae_act))
    return int(max(2 * 2 * per_block + act, 200e6 + vae_act))


def oom_advice(config: FluxConfig, ae: AutoEncoderConfig, current: str, width: int,
               height: int, batch: int, free_bytes: int | None, bytes_per_param: float) -> str:
    """What to say after a CUDA out-of-memory error: the most resident preset that fits."""
    start = ORDER.index(current) + 1 if current in ORDER else 0
    for name in ORDER[start:]:
        need = estimate_peak_bytes(config, ae, name, width, height, batch, bytes_per_param)
        if free_bytes is None or need <= free_bytes:
            return (f"out of GPU memory with --memory {current}; try --memory {name} "
                    f"(about {need / GiB:.1f} GiB needed)")
    return (f"out of GPU memory even for --memory 8gb; use a smaller --size, fewer images, "
            f"or --quantize int8wo (with --memory {current})")
