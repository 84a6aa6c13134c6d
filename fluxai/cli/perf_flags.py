"""The speed/memory flags shared by `fluxai generate` and `fluxai bench`."""

from __future__ import annotations

import argparse
from contextlib import contextmanager
from typing import Any

from fluxai.perf.memory import ORDER
from fluxai.perf.options import PerfOptions
from fluxai.perf.quantize import MODES


def add_perf_arguments(p: argparse.ArgumentParser, memory: bool = True) -> None:
    p.add_argument("--quantize", default=None, choices=list(MODES), metavar="MODE",
                   help="quantize the transformer's blocks: " + ", ".join(
                       f"{m} ({s.summary}{'; CUDA' if s.needs_cuda else ''})"
                       for m, s in MODES.items()))
    if memory:
        p.add_argument("--memory", default=None, choices=list(ORDER),
                       help="memory preset: max (all on the GPU), balanced (parts take turns), "
                            "low (block offload), 8gb (block offload + VAE tiling)")
    p.add_argument("--cache-threshold", type=float, default=0.0, metavar="T",
                   help="step caching: skip a step's later blocks when its first block changed "
                        "by less than T (relative L1; 0 = off, try 0.05-0.15)")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the transformer blocks (slow first step)")


def perf_options(args: argparse.Namespace) -> PerfOptions:
    return PerfOptions(args.quantize, getattr(args, "memory", None), args.cache_threshold,
                       args.compile)


@contextmanager
def oom_explained(pipe: Any, opts: PerfOptions, width: int, height: int, batch: int):
    """Turn a CUDA out-of-memory error into a one-line suggestion of a preset that fits."""
    import torch

    try:
        yield
    except torch.cuda.OutOfMemoryError:
        from fluxai.perf.memory import oom_advice

        device = pipe.device
        free = torch.cuda.mem_get_info(device)[0] if device.type == "cuda" else None
        total = torch.cuda.mem_get_info(device)[1] if device.type == "cuda" else None
        bytes_per_param = 1.0 if opts.quantize else pipe.dtype.itemsize
        raise RuntimeError(oom_advice(pipe.transformer.config, pipe.vae.config,
                                      opts.memory or "max", width, height, batch, total or free,
                                      bytes_per_param)) from None
