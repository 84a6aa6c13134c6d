import pytest
import torch

from fluxai.config import PRESETS
from fluxai.model.transformer import Flux
from fluxai.perf.offload import BlockOffload, ModelOffload
from fluxai.sampling import image_ids, text_ids

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def inputs(device="cpu"):
    gen = torch.Generator().manual_seed(0)
    x = (torch.randn(1, 16, 64, generator=gen), image_ids(8, 8, 1, "cpu"),
         torch.randn(1, 5, 48, generator=gen), text_ids(1, 5, "cpu"), torch.tensor([0.5]),
         torch.randn(1, 32, generator=gen), torch.tensor([3.0]))
    return tuple(t.to(device) for t in x)


def fresh_model():
    torch.manual_seed(0)
    return Flux(PRESETS["flux-test-dev"].transformer).eval()


@pytest.mark.parametrize("device", DEVICES)
def test_block_offload_is_exact(device):
    plain = fresh_model().to(device)
    offloaded = fresh_model()
    BlockOffload(offloaded, device)
    with torch.no_grad():
        expected = plain(*inputs(device))
        got = offloaded(*inputs(device))
        again = offloaded(*inputs(device))  # the second step reuses the prefetch cycle
    assert torch.equal(got, expected) and torch.equal(again, expected)


@pytest.mark.parametrize("device", DEVICES)
def test_blocks_return_to_host_memory_after_each_forward(device):
    model = fresh_model()
    offload = BlockOffload(model, device)
    with torch.no_grad():
        model(*inputs(device))
    for block, host in zip(offload.blocks, offload._host, strict=True):
        params = [*block.parameters(), *block.buffers()]
        assert all(p.data_ptr() == h.data_ptr() for p, h in zip(params, host, strict=True))
        assert all(p.device.type == "cpu" for p in params)


@pytest.mark.parametrize("device", DEVICES)
def test_model_offload_returns_outputs_where_the_inputs_were(device):
    model = fresh_model()
    offload = ModelOffload([model], device)
    with torch.no_grad():
        out = model(*inputs("cpu"))
    assert out.device.type == "cpu"
    assert offload.active is model
    assert next(model.parameters()).device.type == torch.device(device).type


def test_removing_block_offload_detaches_its_hooks():
    model = fresh_model()
    offload = BlockOffload(model, "cpu")
    offload.remove()
    assert all(not b._forward_pre_hooks and not b._forward_hooks for b in offload.blocks)
