"""Seeded random weights that depend only on (seed, parameter name, shape).

The reference fixtures were made by loading these weights into the official BFL classes; the
tests load the same weights into ours. Because every tensor is drawn from its own generator,
seeded by its name, the weights do not depend on the order a model lists its parameters in.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterable

import torch
from torch import Tensor

SCALE_SUFFIXES = ("scale", "norm.weight", "norm1.weight", "norm2.weight", "norm_out.weight",
                  "group_norm.weight", "conv_norm_out.weight")


def seeded_tensor(seed: int, name: str, shape: Iterable[int], std: float = 0.1) -> Tensor:
    gen = torch.Generator().manual_seed(seed * 1_000_003 + zlib.crc32(name.encode()))
    noise = torch.randn(tuple(shape), generator=gen) * std
    # Norm scales near one, everything else near zero but never exactly: no mapping mistake
    # (a transposed, swapped or dropped tensor) can hide behind a zero or a one.
    return 1.0 + noise if name.endswith(SCALE_SUFFIXES) else noise


def seeded_state_dict(module: torch.nn.Module, seed: int) -> dict[str, Tensor]:
    return {name: seeded_tensor(seed, name, t.shape) for name, t in module.state_dict().items()}


def load_seeded(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    module.load_state_dict(seeded_state_dict(module, seed), strict=True)
    return module
