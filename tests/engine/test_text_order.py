"""FLUX.1 gives every text token position id 0: word order reaches the transformer only through
the text encoder's contextual states (why flux-tiny's binding depends on what MiniLM encodes,
docs/models/flux-tiny.md "Where it fails")."""

import torch
from reference_weights import load_seeded

from fluxai.config import FluxConfig
from fluxai.model.transformer import Flux
from fluxai.sampling import image_ids, text_ids


def test_the_prediction_is_blind_to_the_order_of_the_text_token_states():
    cfg = FluxConfig(in_channels=16, out_channels=16, vec_in_dim=8, context_in_dim=12,
                     hidden_size=32, num_heads=2, depth=1, depth_single_blocks=1,
                     axes_dim=(4, 6, 6), guidance_embed=False)
    model = load_seeded(Flux(cfg), seed=3).eval()
    gen = torch.Generator().manual_seed(0)
    img, y = torch.randn(1, 4, 16, generator=gen), torch.randn(1, 8, generator=gen)
    context = torch.randn(1, 5, 12, generator=gen)

    def predict(ctx: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return model(img, image_ids(4, 4, 1, "cpu"), ctx, text_ids(1, 5, "cpu"),
                         torch.tensor([0.5]), y)

    exchanged = context[:, [0, 3, 2, 1, 4]]
    assert torch.allclose(predict(context), predict(exchanged), atol=1e-6)
    assert not torch.allclose(predict(context), predict(context.flip(-1)), atol=1e-3)
