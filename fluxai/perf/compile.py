"""Regional `torch.compile`: compile the repeated blocks, not the whole model.

Every double block shares one code object, as does every single block, so compiling them
regionally costs small graphs instead of one for the whole 57-block model, and (unfrozen, as on
GPUs) two compilations serve every block, resolutions aside. CUDA graphs (inductor's
"reduce-overhead" mode) remove the per-kernel launch cost when shapes are static, which they
are within one sampling run.

On a CPU the blocks are also compiled with inductor's *freezing*: weights become constants,
so oneDNN can pre-pack them once into its blocked (AMX/AVX-512) layout instead of re-reading
the plain layout at every matmul. That makes each block its own graph (one compilation per
block, not per block type) and makes the compiled code blind to later in-place weight changes,
so anything that edits weights afterwards (LoRA, a dtype change) must call `weights_changed`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from fluxai.model.transformer import Flux


def _blocks(model: Flux) -> list[nn.Module]:
    return [*model.double_blocks, *model.single_blocks]


def can_freeze(model: Flux) -> bool:
    """Freezing pays on CPUs and needs plain weights (not torchao's quantized tensors)."""
    return all(p.device.type == "cpu" and type(p.data) is torch.Tensor
               for p in model.parameters())


def _frozen(call: Callable[..., Any]) -> Callable[..., Any]:
    # Inductor reads `freezing` when it compiles, which is at the first call of each shape,
    # so the switch has to be on around every call, not only around `compile()`.
    @functools.wraps(call)
    def run(*args: Any, **kwargs: Any) -> Any:
        with torch._inductor.config.patch(freezing=True):
            return call(*args, **kwargs)
    return run


def compile_blocks(model: Flux, cuda_graphs: bool = False, dynamic: bool | None = False,
                   freeze: bool | None = None) -> Flux:
    """Compile each block of `model` in place; the next forward pays the compile time.

    `cuda_graphs` needs a CUDA model and static shapes (one resolution and batch per run);
    `dynamic=None` lets the compiler generalise after a shape change instead of recompiling.
    `freeze` (default: wherever `can_freeze`) folds the weights into the compiled code.
    """
    if cuda_graphs and next(model.parameters()).device.type != "cuda":
        raise ValueError("CUDA graphs need the model on a CUDA device")
    if freeze is None:
        freeze = can_freeze(model)
    elif freeze and not can_freeze(model):
        raise ValueError("freezing needs plain (unquantized) weights on the CPU")
    mode = "reduce-overhead" if cuda_graphs else None
    for block in _blocks(model):
        block.compile(mode=mode, dynamic=dynamic, fullgraph=True)
        if freeze:
            block._compiled_call_impl = _frozen(block._compiled_call_impl)
    model._fluxai_frozen = freeze
    return model


def is_compiled(model: Flux) -> bool:
    return any(getattr(b, "_compiled_call_impl", None) is not None for b in _blocks(model))


def weights_changed(model: Flux) -> None:
    """Call after editing a compiled model's weights: frozen code is compiled again (at the
    next call) so it sees them; unfrozen code reads the weights at every call anyway."""
    if getattr(model, "_fluxai_frozen", False) and is_compiled(model):
        reset_compiled()


def reset_compiled() -> None:
    """Forget compiled code (after a dtype change, for instance)."""
    torch._dynamo.reset()
