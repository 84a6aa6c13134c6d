"""Mixed precision for training: bf16 autocast where the hardware runs bf16 matmuls natively.

On CUDA and on CPUs with AMX or AVX512-BF16 (Sapphire Rapids and later), bf16 matrix products
run several times faster than fp32 ones; elsewhere bf16 is emulated and slower, so "auto"
keeps fp32 there. Weights, optimizer state and the loss stay fp32 either way.
"""

from __future__ import annotations

import torch

PRECISIONS = ("auto", "bf16", "fp32")


def bf16_is_native(device: torch.device) -> bool:
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()
    return False


def uses_bf16(precision: str, device: torch.device) -> bool:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision == "bf16" or (precision == "auto" and bf16_is_native(device))


def autocast(precision: str, device: torch.device) -> torch.autocast:
    return torch.autocast(device.type, dtype=torch.bfloat16,
                          enabled=uses_bf16(precision, device))
