"""Growing a trained transformer deeper without changing what it computes.

The shipped flux-tiny underfits (its flow loss is the same on training and fresh scenes), so a
continuation may want more capacity than it has; retraining from scratch would throw away hours
of CPU. New single-stream blocks go after the existing ones with their adaLN gate at zero: a
single block adds `gate * out` to its input, so each new block starts as the identity, and the
grown model predicts exactly as its init until training opens the gates (adaLN-Zero).
"""

from __future__ import annotations

from dataclasses import replace

import torch

from fluxai.model.transformer import Flux


@torch.no_grad()
def add_single_blocks(flow: Flux, depth_single_blocks: int, seed: int = 0) -> Flux:
    """`flow` with `depth_single_blocks` single-stream blocks, the new ones last and closed."""
    old = flow.config.depth_single_blocks
    if depth_single_blocks <= old:
        raise ValueError(f"can only add single-stream blocks: {depth_single_blocks} <= {old}")
    # The new blocks' other weights take the usual random init, seeded without touching the
    # caller's random state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        grown = Flux(replace(flow.config, depth_single_blocks=depth_single_blocks))
    missing, unexpected = grown.load_state_dict(flow.state_dict(), strict=False)
    assert not unexpected and all(k.startswith("single_blocks.") for k in missing), missing
    hidden = flow.config.hidden_size
    for block in grown.single_blocks[old:]:
        block.modulation.lin.weight[2 * hidden:] = 0.0  # rows of (shift, scale, gate): the gate
        block.modulation.lin.bias[2 * hidden:] = 0.0
    return grown
