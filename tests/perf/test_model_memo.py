import torch

from fluxai.config import PRESETS
from fluxai.model.transformer import Flux
from fluxai.sampling import image_ids, text_ids


def call(model, ids):
    gen = torch.Generator().manual_seed(0)
    img = torch.randn(1, ids.shape[1], 64, generator=gen)
    txt = torch.randn(1, 5, 48, generator=gen)
    return model(img, ids, txt, text_ids(1, 5, "cpu"), torch.tensor([0.5]),
                 torch.randn(1, 32, generator=gen), torch.tensor([3.0]))


def test_rope_table_is_computed_once_for_repeated_ids():
    model = Flux(PRESETS["flux-test-dev"].transformer).eval()
    calls = []
    model.pe_embedder.register_forward_hook(lambda *_: calls.append(1))
    ids, tids = image_ids(8, 8, 1, "cpu"), text_ids(1, 5, "cpu")
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(1, 16, 64), ids, torch.randn(1, 5, 48), tids, torch.tensor([0.5]),
                  torch.randn(1, 32), torch.tensor([3.0]))
    assert len(calls) == 1


def test_new_ids_of_the_same_shape_are_not_mistaken_for_cached_ones():
    model = Flux(PRESETS["flux-test-dev"].transformer).eval()
    fresh = Flux(PRESETS["flux-test-dev"].transformer).eval()
    fresh.load_state_dict(model.state_dict())
    ids = image_ids(8, 8, 1, "cpu")
    shifted = ids.clone()
    shifted[..., 1] += 3  # same shape, other positions
    with torch.no_grad():
        call(model, ids)
        assert torch.equal(call(model, shifted), call(fresh, shifted))


def test_ids_edited_in_place_are_recomputed():
    model = Flux(PRESETS["flux-test-dev"].transformer).eval()
    fresh = Flux(PRESETS["flux-test-dev"].transformer).eval()
    fresh.load_state_dict(model.state_dict())
    ids = image_ids(8, 8, 1, "cpu").clone()
    with torch.no_grad():
        call(model, ids)
        ids[..., 2] += 1
        assert torch.equal(call(model, ids), call(fresh, ids))
