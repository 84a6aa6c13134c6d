"""The user-facing speed and memory switches, applied to a pipeline in one place.

The CLI (`--quantize`, `--memory`, `--cache-threshold`, `--compile`) and the API
(`FluxPipeline.from_pretrained(..., quantize=, memory=, cache_threshold=)`) both come here, so
the two cannot drift apart. Arguments are checked before any weights are touched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from fluxai.pipeline import FluxPipeline


@dataclass(frozen=True)
class PerfOptions:
    quantize: str | None = None
    memory: str | None = None
    cache_threshold: float = 0.0
    compile: bool = False

    @property
    def any(self) -> bool:
        return bool(self.quantize or self.memory or self.cache_threshold or self.compile)


def check_options(opts: PerfOptions, device: torch.device | str | None) -> None:
    """One-line errors for impossible choices, raised before the model is loaded."""
    from fluxai.perf.memory import get_memory_preset
    from fluxai.perf.quantize import check_mode

    if opts.quantize:
        check_mode(opts.quantize, device if device is not None else "cpu")
    if opts.memory:
        get_memory_preset(opts.memory)
    if not opts.cache_threshold >= 0:
        raise ValueError(f"cache threshold must be >= 0 (0 = off), got {opts.cache_threshold}")


def configure(pipe: FluxPipeline, device: torch.device | str | None, opts: PerfOptions
              ) -> FluxPipeline:
    """Place, quantize, cache and compile `pipe` as `opts` say; returns the same pipeline."""
    from fluxai.perf.cache import enable_step_cache
    from fluxai.perf.memory import apply_memory_preset

    device = torch.device(device if device is not None else "cpu")
    check_options(opts, device)
    if opts.quantize:
        from fluxai.perf.quantize import quantize_transformer

        # Quantize where the weights will compute: torchao packs for the device's kernels.
        pipe.transformer.to(device)
        quantize_transformer(pipe.transformer, opts.quantize, device)
    apply_memory_preset(pipe, opts.memory or "max", device)
    if opts.cache_threshold:
        enable_step_cache(pipe.transformer, opts.cache_threshold)
    if opts.compile:
        from fluxai.perf.compile import compile_blocks

        # Offload moves weights between calls, which frozen code would not see.
        compile_blocks(pipe.transformer, cuda_graphs=device.type == "cuda" and not opts.memory,
                       freeze=False if opts.memory else None)
    return pipe
