"""Growing the transformer deeper: it starts as its init, and its new blocks can learn."""

from __future__ import annotations

import pytest
import torch

from fluxai.config import FluxConfig
from fluxai.model.transformer import Flux
from fluxai.sampling import image_ids, text_ids
from fluxai.train.grow import add_single_blocks

CONFIG = FluxConfig(in_channels=16, out_channels=16, vec_in_dim=8, context_in_dim=12,
                    hidden_size=32, num_heads=2, depth=1, depth_single_blocks=2,
                    axes_dim=(4, 6, 6), guidance_embed=False)


def inputs(seed: int = 1) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    return (torch.randn(2, 4, 16, generator=gen), image_ids(4, 4, 2, "cpu"),
            torch.randn(2, 3, 12, generator=gen), text_ids(2, 3, "cpu"), torch.tensor([0.3, 0.8]),
            torch.randn(2, 8, generator=gen))


def trained_looking() -> Flux:
    model = Flux(CONFIG)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():  # no zero weights, so a block that is not the identity shows
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=gen) * 0.05)
    return model.eval()


def test_a_grown_transformer_predicts_exactly_as_its_init():
    flow = trained_looking()
    grown = add_single_blocks(flow, 5).eval()
    assert len(grown.single_blocks) == 5
    with torch.no_grad():
        assert torch.equal(grown(*inputs()), flow(*inputs()))


def test_the_new_blocks_open_under_training():
    grown = add_single_blocks(trained_looking(), 3).train()
    opt = torch.optim.SGD(grown.parameters(), lr=0.1)
    grown(*inputs()).pow(2).mean().backward()
    opt.step()
    gate = grown.single_blocks[2].modulation.lin.weight[2 * CONFIG.hidden_size:]
    assert gate.abs().sum() > 0


def test_growing_to_fewer_blocks_is_refused():
    with pytest.raises(ValueError, match="can only add single-stream blocks"):
        add_single_blocks(trained_looking(), 2)
