"""Regional `torch.compile`: compile the repeated blocks, not the whole model.

Every double block shares one code object, as does every single block, so compiling them
regionally costs two compilations instead of one for the whole 57-block graph, and the result is
reused across blocks, resolutions aside. CUDA graphs (inductor's "reduce-overhead" mode) remove
the per-kernel launch cost when shapes are static, which they are within one sampling run.
"""

from __future__ import annotations

import torch

from fluxai.model.transformer import Flux


def compile_blocks(model: Flux, cuda_graphs: bool = False, dynamic: bool | None = False
                   ) -> Flux:
    """Compile each block of `model` in place; the next forward pays the compile time.

    `cuda_graphs` needs a CUDA model and static shapes (one resolution and batch per run);
    `dynamic=None` lets the compiler generalise after a shape change instead of recompiling.
    """
    if cuda_graphs and next(model.parameters()).device.type != "cuda":
        raise ValueError("CUDA graphs need the model on a CUDA device")
    mode = "reduce-overhead" if cuda_graphs else None
    for block in [*model.double_blocks, *model.single_blocks]:
        block.compile(mode=mode, dynamic=dynamic, fullgraph=True)
    return model


def is_compiled(model: Flux) -> bool:
    return any(getattr(b, "_compiled_call_impl", None) is not None
               for b in [*model.double_blocks, *model.single_blocks])


def reset_compiled() -> None:
    """Forget compiled code (after a dtype change, for instance)."""
    torch._dynamo.reset()
