"""Runtime adapters: stacking with weights, fusing, and restoring the base model exactly."""

import logging

import pytest
import torch
from lora_helpers import CONFIG, H, model_inputs, rand, random_model

from fluxai.lora import LoraAdapters, LoraError

R = 4


def diffusers_lora(seed: int, alpha: float = 8.0) -> dict[str, torch.Tensor]:
    """A LoRA touching a fused slice, a whole layer and a single block, diffusers-named."""
    mlp = CONFIG.mlp_hidden_dim
    sd = {}
    for i, (name, rows, fan_in) in enumerate([
            ("transformer_blocks.0.attn.to_k", H, H),
            ("transformer_blocks.1.ff.net.2", H, mlp),
            ("single_transformer_blocks.1.proj_mlp", mlp, H)]):
        sd[f"transformer.{name}.lora_A.weight"] = rand(R, fan_in, seed=seed + 2 * i) * 0.3
        sd[f"transformer.{name}.lora_B.weight"] = rand(rows, R, seed=seed + 2 * i + 1) * 0.3
        sd[f"transformer.{name}.alpha"] = torch.tensor(alpha)
    return sd


def forward(model, x):
    with torch.no_grad():
        return model(**x)


@pytest.fixture
def setup():
    model = random_model()
    return model, LoraAdapters(model), model_inputs(), forward(model, model_inputs())


def weights_of(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_a_loaded_lora_changes_the_output_and_fusing_gives_the_same_output(setup):
    model, lora, x, base = setup
    lora.load(diffusers_lora(1), "a")
    runtime = forward(model, x)
    lora.fuse()
    assert (runtime - base).abs().max() > 1e-2
    assert torch.allclose(forward(model, x), runtime, atol=1e-5)


def test_unfuse_restores_the_base_weights_bit_for_bit(setup):
    model, lora, _, _ = setup
    before = weights_of(model)
    lora.load(diffusers_lora(1), "a")
    lora.fuse(0.7)
    key = "double_blocks.0.img_attn.qkv.weight"
    assert not torch.equal(model.state_dict()[key], before[key])
    lora.unfuse()
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_unload_restores_the_base_model_and_its_output(setup):
    model, lora, x, base = setup
    before = weights_of(model)
    lora.load(diffusers_lora(1), "a")
    lora.load(diffusers_lora(9), "b")
    lora.fuse()
    lora.unload()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert torch.equal(forward(model, x), base)
    assert not lora._hooks


def test_two_adapters_with_weights_add_their_weighted_updates(setup):
    model, lora, x, _ = setup
    lora.load(diffusers_lora(1), "a")
    lora.load(diffusers_lora(9), "b")
    lora.set_adapters(["a", "b"], [0.5, -1.5])
    stacked = forward(model, x)

    reference = random_model()  # the same base, with the weighted updates written in by hand
    for name, w in (("a", 0.5), ("b", -1.5)):
        for part in lora.parts[name]:
            layer = reference.get_submodule(part.module)
            with torch.no_grad():
                layer.weight[part.rows[0]:part.rows[1]] += w * part.delta_weight()
    assert torch.allclose(stacked, forward(reference, x), atol=1e-5)


def test_set_adapters_leaves_out_the_adapters_not_named(setup):
    model, lora, x, _ = setup
    lora.load(diffusers_lora(1), "a")
    only_a = forward(model, x)
    lora.load(diffusers_lora(9), "b")
    lora.set_adapters(["a"])
    assert lora.active == ["a"]
    assert torch.equal(forward(model, x), only_a)


def test_loading_an_adapter_makes_it_the_only_active_one_as_in_diffusers(setup):
    _, lora, _, _ = setup
    lora.load(diffusers_lora(1), "a")
    lora.load(diffusers_lora(9), "b")
    assert lora.active == ["b"]


def test_adapter_weight_zero_is_the_base_output(setup):
    model, lora, x, base = setup
    lora.load(diffusers_lora(1), "a")
    lora.set_adapters("a", 0.0)
    assert torch.equal(forward(model, x), base)


def test_a_lora_whose_shapes_do_not_fit_is_refused_and_changes_nothing(setup):
    model, lora, x, base = setup
    lora.load(diffusers_lora(1), "a")
    with_a = forward(model, x)
    bad = diffusers_lora(5)
    bad["transformer.transformer_blocks.1.ff.net.2.lora_A.weight"] = rand(R, H + 1, seed=1)
    with pytest.raises(LoraError) as err:
        lora.load(bad, "b")
    message = str(err.value)
    assert "\n" not in message
    assert "diffusers" in message and "transformer_blocks.1.ff.net.2" in message
    assert list(lora.parts) == ["a"]
    assert torch.equal(forward(model, x), with_a)
    lora.unload()
    assert torch.equal(forward(model, x), base)


def test_a_lora_matching_nothing_is_refused_naming_format_and_an_example(setup):
    _, lora, _, _ = setup
    sd = {"lora_unet_input_blocks_1_proj_in.lora_down.weight": rand(R, 8, seed=1),
          "lora_unet_input_blocks_1_proj_in.lora_up.weight": rand(8, R, seed=2)}
    with pytest.raises(LoraError, match=r"kohya.*none of its 2 keys.*input_blocks"):
        lora.load(sd, "sdxl")
    assert not lora.parts


def test_a_partial_match_loads_and_reports_the_counts(setup, caplog):
    _, lora, _, _ = setup
    sd = diffusers_lora(1)
    sd["transformer.transformer_blocks.9.attn.to_q.lora_A.weight"] = rand(R, H, seed=3)
    with caplog.at_level(logging.WARNING, logger="fluxai.lora"):
        report = lora.load(sd, "a")
    assert (report.mapped_keys, report.total_keys, len(report.unmatched)) == (9, 10, 1)
    assert "9/10 keys" in caplog.text and "1 keys matched nothing" in caplog.text


def test_a_second_adapter_with_the_same_name_is_refused(setup):
    _, lora, _, _ = setup
    lora.load(diffusers_lora(1), "a")
    with pytest.raises(LoraError, match="already loaded"):
        lora.load(diffusers_lora(2), "a")


def test_setting_an_unknown_adapter_names_the_loaded_ones(setup):
    _, lora, _, _ = setup
    lora.load(diffusers_lora(1), "a")
    with pytest.raises(LoraError, match="no adapter named 'b'; loaded adapters: a"):
        lora.set_adapters(["b"])


def test_unnamed_loads_get_diffusers_default_names(setup):
    _, lora, _, _ = setup
    lora.load(diffusers_lora(1))
    lora.load(diffusers_lora(2))
    assert list(lora.parts) == ["default_0", "default_1"]


def test_adapters_follow_the_model_to_another_dtype(setup):
    model, lora, x, _ = setup
    lora.load(diffusers_lora(1), "a")
    expected = forward(model, x)
    model.to(torch.float64)
    got = forward(model, {k: v.double() for k, v in x.items()})
    assert torch.allclose(got.float(), expected, atol=1e-4)


def test_an_adapted_layer_swapped_for_another_module_keeps_its_adapter(setup):
    # Quantizers may replace nn.Linear modules; the adapter must follow, not vanish.
    model, lora, x, _ = setup
    lora.load(diffusers_lora(1), "a")
    expected = forward(model, x)
    old = model.double_blocks[0].img_attn.qkv
    new = torch.nn.Linear(old.in_features, old.out_features)
    new.load_state_dict(old.state_dict())
    model.double_blocks[0].img_attn.qkv = new
    assert torch.allclose(forward(model, x), expected, atol=1e-6)
    lora.unload()
    assert not new._forward_hooks and not model._forward_pre_hooks


def test_disabled_runs_the_base_model_and_then_restores_the_adapters(setup):
    model, lora, x, base = setup
    lora.load(diffusers_lora(1), "a")
    adapted = forward(model, x)
    with lora.disabled():
        assert torch.equal(forward(model, x), base)
    assert torch.equal(forward(model, x), adapted)
    assert lora.active == ["a"]
