"""Running fp8 weights without upcasting the whole model: each linear upcasts its own weight.

fp8 (`float8_e4m3fn` / `float8_e5m2`) halves a bf16 checkpoint's memory, but CPU and most GPU
matmuls cannot take it directly. Keeping the weights in fp8 and converting one layer's weight to
the activations' dtype inside its forward keeps memory at fp8 size with one layer's overhead.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from fluxai.checkpoints.safetensors_io import FP8_DTYPES


class UpcastLinear(nn.Linear):
    """An `nn.Linear` (same parameter names) whose stored weight is upcast at every call."""

    def forward(self, x: Tensor) -> Tensor:
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, self.weight.to(x.dtype), bias)


def upcast_per_layer(model: nn.Module) -> int:
    """Switch every linear with an fp8 weight to per-call upcasting; returns how many."""
    n = 0
    for module in model.modules():
        if type(module) is nn.Linear and module.weight.dtype in FP8_DTYPES:
            module.__class__ = UpcastLinear  # same parameters, same names: only forward changes
            n += 1
    return n


def fp8_linear_weights(model: nn.Module) -> set[str]:
    """Names of the parameters that may stay fp8: the weights of plain linears."""
    return {f"{name}.weight" for name, m in model.named_modules() if type(m) is nn.Linear}
