"""FLOPs of one transformer forward pass, counted from the config, and device peak throughput.

Only matrix products are counted (2 FLOPs per multiply-add): they are >99% of the work at any
real size. Norms, activations and RoPE are elementwise and memory-bound; they cost time, not
FLOPs worth counting, which is why the achieved fraction of peak is below one even when every
matmul runs at full speed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from fluxai.config import FluxConfig

# Dense (no sparsity) bf16/fp16 tensor-core peaks from the vendors' datasheets, TFLOP/s, keyed by
# the words CUDA's device name contains (the SXM H100 reports itself as "H100 80GB HBM3").
GPU_PEAK_TFLOPS: dict[tuple[str, ...], float] = {
    ("H200",): 989.4,
    ("H100", "HBM3"): 989.4,
    ("H100", "SXM"): 989.4,
    ("H100", "NVL"): 835.0,
    ("H100", "PCIe"): 756.0,
    ("H100",): 756.0,  # unknown form factor: the conservative one
    ("A100",): 312.0,
    ("L40S",): 362.0,
    ("L4",): 121.0,
    ("A10G",): 70.0,
    ("A10",): 125.0,
    ("RTX 4090",): 165.2,
    ("RTX 3090",): 71.0,
    ("T4",): 65.0,
}


@dataclass(frozen=True)
class StepFlops:
    linear: int  # every Linear layer: projections, MLPs, modulation, embedders, final layer
    attention: int  # QK^T and attention @ V of the joint sequence

    @property
    def total(self) -> int:
        return self.linear + self.attention


def transformer_flops(config: FluxConfig, image_tokens: int, text_tokens: int, batch: int = 1
                      ) -> StepFlops:
    """FLOPs of one `Flux.forward` on `batch` samples (a CFG pass counts its doubled batch)."""
    h, m, n = config.hidden_size, config.mlp_hidden_dim, image_tokens
    s = image_tokens + text_tokens
    double = (
        2 * 2 * h * 6 * h  # img_mod and txt_mod
        + 2 * s * h * 3 * h  # qkv of both streams (each stream's tokens once)
        + 2 * s * h * h  # output projections
        + 2 * s * 2 * h * m  # MLPs
    )
    single = 2 * h * 3 * h + 2 * s * h * (3 * h + m) + 2 * s * (h + m) * h
    embed = (2 * n * config.in_channels * h + 2 * text_tokens * config.context_in_dim * h
             + 2 * (256 * h + h * h) * (2 if config.guidance_embed else 1)
             + 2 * (config.vec_in_dim * h + h * h))
    final = 2 * h * 2 * h + 2 * n * h * config.out_channels
    blocks = config.depth + config.depth_single_blocks
    linear = double * config.depth + single * config.depth_single_blocks + embed + final
    attention = 2 * 2 * s * s * h * blocks
    return StepFlops(batch * linear, batch * attention)


def gpu_peak_tflops(device_name: str) -> float | None:
    """Datasheet dense bf16 peak for a CUDA device name, or None when the card is not listed."""
    words = device_name.lower()
    matches = [(len(key), sum(map(len, key)), peak) for key, peak in GPU_PEAK_TFLOPS.items()
               if all(k.lower() in words for k in key)]
    return max(matches)[2] if matches else None  # the most specific entry wins


def measured_matmul_tflops(device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                           n: int = 1024, repeats: int = 5,
                           clock: Callable[[], float] = time.perf_counter) -> float:
    """Throughput of one large square matmul: the practical ceiling when no datasheet applies
    (CPUs, whose peak depends on cores, clocks and vector units that torch cannot report)."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        t0 = clock()
        torch.mm(a, b)
        _sync(device)
        best = min(best, clock() - t0)
    return 2 * n**3 / best / 1e12


def _sync(device: torch.device | str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)
