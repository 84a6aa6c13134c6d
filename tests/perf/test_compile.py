import pytest
import torch

from fluxai.config import PRESETS
from fluxai.lora.state import LoraPart, LoraState
from fluxai.model.transformer import Flux
from fluxai.perf.compile import can_freeze, compile_blocks, reset_compiled
from fluxai.sampling import image_ids, text_ids


def model_and_inputs():
    torch.manual_seed(0)
    config = PRESETS["flux-test-dev"].transformer
    model = Flux(config).eval()
    gen = torch.Generator().manual_seed(1)
    x = (torch.randn(1, 16, 64, generator=gen), image_ids(8, 8, 1, "cpu"),
         torch.randn(1, 8, config.context_in_dim, generator=gen), text_ids(1, 8, "cpu"),
         torch.tensor([0.7]), torch.randn(1, config.vec_in_dim, generator=gen),
         torch.tensor([3.5]))
    return model, x


@pytest.fixture(autouse=True)
def fresh_compiler():
    reset_compiled()
    yield
    reset_compiled()


def test_plain_cpu_weights_can_be_frozen_and_quantized_ones_cannot():
    pytest.importorskip("torchao")
    from fluxai.perf.quantize import quantize_transformer

    model, _ = model_and_inputs()
    assert can_freeze(model)
    quantize_transformer(model, "int8wo")
    assert not can_freeze(model)
    with pytest.raises(ValueError, match="freezing needs plain"):
        compile_blocks(model, freeze=True)


@pytest.mark.slow
def test_frozen_compiled_blocks_compute_what_eager_blocks_compute():
    model, x = model_and_inputs()
    with torch.no_grad():
        expected = model(*x)
        compile_blocks(model)
        assert model._fluxai_frozen
        got = model(*x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)


def _lora(model: Flux) -> LoraState:
    hidden = model.config.hidden_size
    gen = torch.Generator().manual_seed(2)
    part = LoraPart("double_blocks.0.img_attn.qkv", (0, 3 * hidden),
                    torch.randn(4, hidden, generator=gen),
                    torch.randn(3 * hidden, 4, generator=gen), alpha=4.0, source="test")
    return LoraState("fluxai", [part], total_keys=2)


def _eager_copy(model: Flux) -> Flux:
    eager = Flux(model.config).eval()
    eager.load_state_dict(model.state_dict())
    return eager


@pytest.mark.slow
def test_a_lora_fused_after_freezing_reaches_the_compiled_code():
    from fluxai.lora import LoraAdapters

    model, x = model_and_inputs()
    compile_blocks(model)
    adapters = LoraAdapters(model)
    with torch.no_grad():
        before = model(*x)
        adapters.add("a", _lora(model))
        adapters.fuse()
        fused, expected = model(*x), _eager_copy(model)(*x)
        adapters.unload()
        restored = model(*x)
    assert not torch.allclose(fused, before)
    torch.testing.assert_close(fused, expected, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(restored, before, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_an_unfused_lora_runs_in_frozen_compiled_code():
    from fluxai.lora import LoraAdapters

    model, x = model_and_inputs()
    reference = _eager_copy(model)
    LoraAdapters(reference).add("a", _lora(reference))
    compile_blocks(model)
    with torch.no_grad():
        model(*x)  # compiled before the adapter exists
        LoraAdapters(model).add("a", _lora(model))
        got, expected = model(*x), reference(*x)
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-5)
