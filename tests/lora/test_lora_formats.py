"""Every supported layout, written here by hand the way its tool writes it, converts into the
same BFL-layer updates (rows of fused layers included)."""

import json

import pytest
import torch
from lora_helpers import CONFIG, MLP, H, deltas, rand

from fluxai.lora import TargetTable, convert, detect_format

TABLE = TargetTable(CONFIG)
R = 4


def pair(seed: int, rows: int, fan_in: int = H, rank: int = R):
    return rand(rank, fan_in, seed=seed), rand(rows, rank, seed=seed + 1)


def lowrank(down, up, alpha=None):
    return (alpha / down.shape[0] if alpha is not None else 1.0) * up @ down


def assert_deltas(state, expected):
    got = deltas(state)
    assert sorted(got) == sorted(expected)
    for module, want in expected.items():
        assert torch.allclose(got[module], want, atol=1e-5), module


def rows_of(rows: int, lo: int, block, fan_in: int = H):
    out = torch.zeros(rows, fan_in)
    out[lo:lo + block.shape[0]] = block
    return out


def test_diffusers_q_k_v_land_on_their_rows_of_the_fused_qkv():
    (dq, uq), (dv, uv) = pair(1, H), pair(3, H)
    sd = {"transformer.transformer_blocks.0.attn.to_q.lora_A.weight": dq,
          "transformer.transformer_blocks.0.attn.to_q.lora_B.weight": uq,
          "transformer.transformer_blocks.1.attn.add_v_proj.lora_A.weight": dv,
          "transformer.transformer_blocks.1.attn.add_v_proj.lora_B.weight": uv}
    meta = {"lora_adapter_metadata": json.dumps({"transformer.r": R,
                                                 "transformer.lora_alpha": 8})}
    state = convert(sd, TABLE, meta)
    assert state.format == "diffusers"
    assert_deltas(state, {
        "double_blocks.0.img_attn.qkv": rows_of(3 * H, 0, lowrank(dq, uq, 8)),
        "double_blocks.1.txt_attn.qkv": rows_of(3 * H, 2 * H, lowrank(dv, uv, 8)),
    })


def test_diffusers_proj_mlp_lands_after_qkv_in_single_block_linear1():
    d, u = pair(5, MLP)
    sd = {"transformer.single_transformer_blocks.1.proj_mlp.lora_A.weight": d,
          "transformer.single_transformer_blocks.1.proj_mlp.lora_B.weight": u}
    assert_deltas(convert(sd, TABLE), {
        "single_blocks.1.linear1": rows_of(3 * H + MLP, 3 * H, lowrank(d, u))})


def test_diffusers_norm_out_scale_shift_halves_are_swapped_into_bfl_order():
    d, u = pair(7, 2 * H)
    sd = {"transformer.norm_out.linear.lora_A.weight": d,
          "transformer.norm_out.linear.lora_B.weight": u}
    expected = lowrank(d, torch.cat([u[H:], u[:H]]))  # BFL: shift first; diffusers: scale first
    assert_deltas(convert(sd, TABLE), {"final_layer.adaLN_modulation.1": expected})


def test_peft_alpha_keys_set_the_scale():
    d, u = pair(9, H)
    sd = {"transformer.transformer_blocks.0.attn.to_out.0.lora_A.weight": d,
          "transformer.transformer_blocks.0.attn.to_out.0.lora_B.weight": u,
          "transformer.transformer_blocks.0.attn.to_out.0.alpha": torch.tensor(2.0)}
    assert_deltas(convert(sd, TABLE), {"double_blocks.0.img_attn.proj": lowrank(d, u, 2.0)})


def test_kohya_fused_qkv_and_linear1_map_whole_with_alpha():
    (d1, u1), (d2, u2) = pair(11, 3 * H), pair(13, 3 * H + MLP)
    sd = {"lora_unet_double_blocks_1_img_attn_qkv.lora_down.weight": d1,
          "lora_unet_double_blocks_1_img_attn_qkv.lora_up.weight": u1,
          "lora_unet_double_blocks_1_img_attn_qkv.alpha": torch.tensor(2.0),
          "lora_unet_single_blocks_0_linear1.lora_down.weight": d2,
          "lora_unet_single_blocks_0_linear1.lora_up.weight": u2,
          "lora_unet_single_blocks_0_linear1.alpha": torch.tensor(16.0)}
    state = convert(sd, TABLE)
    assert state.format == "kohya"
    assert_deltas(state, {"double_blocks.1.img_attn.qkv": lowrank(d1, u1, 2.0),
                          "single_blocks.0.linear1": lowrank(d2, u2, 16.0)})


def test_kohya_split_qkv_layout_equals_separate_q_k_v():
    # sd-scripts' split_qkv saves stacked downs and a block-diagonal up under one module name.
    parts = [pair(20 + 2 * j, H) for j in range(3)]
    up = torch.block_diag(*[u for _, u in parts])
    sd = {"lora_unet_double_blocks_0_txt_attn_qkv.lora_down.weight":
          torch.cat([d for d, _ in parts]),
          "lora_unet_double_blocks_0_txt_attn_qkv.lora_up.weight": up,
          "lora_unet_double_blocks_0_txt_attn_qkv.alpha": torch.tensor(3.0 * R)}
    expected = torch.cat([u @ d for d, u in parts])  # alpha / (3R) = 1 for each slice
    assert_deltas(convert(sd, TABLE), {"double_blocks.0.txt_attn.qkv": expected})


def test_comfyui_prefixed_bfl_names():
    d, u = pair(31, H, fan_in=MLP)
    sd = {"diffusion_model.double_blocks.0.img_mlp.2.lora_down.weight": d,
          "diffusion_model.double_blocks.0.img_mlp.2.lora_up.weight": u}
    state = convert(sd, TABLE)
    assert state.format == "comfyui"
    assert_deltas(state, {"double_blocks.0.img_mlp.2": lowrank(d, u)})


def test_onetrainer_underscored_diffusers_names():
    d, u = pair(33, H)
    sd = {"lora_transformer_single_transformer_blocks_0_attn_to_k.lora_down.weight": d,
          "lora_transformer_single_transformer_blocks_0_attn_to_k.lora_up.weight": u,
          "lora_transformer_single_transformer_blocks_0_attn_to_k.alpha": torch.tensor(8.0)}
    state = convert(sd, TABLE)
    assert state.format == "onetrainer"
    assert_deltas(state, {"single_blocks.0.linear1": rows_of(3 * H + MLP, H,
                                                             lowrank(d, u, 8.0))})


def test_ai_toolkit_is_recognised_by_its_metadata_and_has_scale_one():
    d, u = pair(35, 6 * H)
    sd = {"transformer.transformer_blocks.0.norm1_context.linear.lora_A.weight": d,
          "transformer.transformer_blocks.0.norm1_context.linear.lora_B.weight": u}
    state = convert(sd, TABLE, {"software": json.dumps({"name": "ai-toolkit"})})
    assert state.format == "ai-toolkit"
    assert_deltas(state, {"double_blocks.0.txt_mod.lin": lowrank(d, u)})


def test_xlabs_lora2_adapts_the_text_stream_and_single_qkv_the_attention_rows():
    (d1, u1), (d2, u2) = pair(41, 3 * H), pair(43, 3 * H)
    sd = {"double_blocks.1.processor.qkv_lora2.down.weight": d1,
          "double_blocks.1.processor.qkv_lora2.up.weight": u1,
          "single_blocks.0.processor.qkv_lora.down.weight": d2,
          "single_blocks.0.processor.qkv_lora.up.weight": u2}
    state = convert(sd, TABLE)
    assert state.format == "xlabs"
    assert_deltas(state, {"double_blocks.1.txt_attn.qkv": lowrank(d1, u1),
                          "single_blocks.0.linear1": rows_of(3 * H + MLP, 0, lowrank(d2, u2))})


def test_lycoris_loha_is_the_hadamard_product_of_two_low_rank_products():
    w1a, w1b, w2a, w2b = (rand(MLP, R, seed=51), rand(R, H, seed=52), rand(MLP, R, seed=53),
                          rand(R, H, seed=54))
    stem = "lora_unet_double_blocks_0_txt_mlp_0"
    sd = {f"{stem}.hada_w1_a": w1a, f"{stem}.hada_w1_b": w1b, f"{stem}.hada_w2_a": w2a,
          f"{stem}.hada_w2_b": w2b, f"{stem}.alpha": torch.tensor(2.0)}
    state = convert(sd, TABLE)
    assert state.format == "lycoris-loha"
    assert_deltas(state, {"double_blocks.0.txt_mlp.0": (w1a @ w1b) * (w2a @ w2b) * 2.0 / R})


def test_lycoris_lokr_is_a_kronecker_product_scaled_by_the_decomposed_rank():
    w1 = rand(4, 8, seed=61)  # linear2: (H, H + MLP) = (64, 320) = kron((4, 8), (16, 40))
    w2a, w2b = rand(16, 2, seed=62), rand(2, 40, seed=63)
    stem = "lycoris_single_blocks_1_linear2"
    sd = {f"{stem}.lokr_w1": w1, f"{stem}.lokr_w2_a": w2a, f"{stem}.lokr_w2_b": w2b,
          f"{stem}.alpha": torch.tensor(1.0)}
    state = convert(sd, TABLE)
    assert state.format == "lycoris-lokr"
    assert_deltas(state, {"single_blocks.1.linear2": torch.kron(w1, w2a @ w2b) * 1.0 / 2})


def test_bfl_control_lora_is_detected_with_its_norm_replacements():
    d, u = pair(71, H, fan_in=2 * CONFIG.in_channels)
    sd = {"img_in.lora_A.weight": d, "img_in.lora_B.weight": u,
          "double_blocks.0.img_attn.norm.key_norm.scale": torch.ones(CONFIG.head_dim)}
    state = convert(sd, TABLE)
    assert state.format == "bfl-control"
    assert "double_blocks.0.img_attn.norm.key_norm.scale" in state.replacements
    assert "img_in.lora_A.weight" in state.misfits  # twice the input channels: a control model


def test_text_encoder_keys_are_reported_not_dropped():
    d, u = pair(81, H)
    sd = {"lora_unet_img_in.lora_down.weight": rand(R, CONFIG.in_channels, seed=1),
          "lora_unet_img_in.lora_up.weight": u,
          "lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": d,
          "lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_up.weight": d.T}
    state = convert(sd, TABLE)
    assert len(state.text_encoder_keys) == 2
    assert state.mapped_keys == 2


def test_keys_naming_no_layer_are_kept_with_the_reason():
    sd = {"lora_unet_double_blocks_7_img_attn_qkv.lora_down.weight": rand(R, H, seed=1),
          "lora_unet_double_blocks_7_img_attn_qkv.lora_up.weight": rand(3 * H, R, seed=2)}
    state = convert(sd, TABLE)
    assert not state.parts
    assert set(state.unmatched) == set(sd)


def test_a_down_without_its_up_is_a_misfit_not_a_silent_skip():
    sd = {"transformer.proj_out.lora_A.weight": rand(R, H, seed=1)}
    state = convert(sd, TABLE)
    assert "transformer.proj_out.lora_A.weight" in state.misfits


@pytest.mark.parametrize(("key", "fmt"), [
    ("transformer.single_transformer_blocks.0.attn.to_q.lora_A.weight", "diffusers"),
    ("lora_unet_single_blocks_0_linear1.lora_down.weight", "kohya"),
    ("diffusion_model.single_blocks.0.linear1.lora_A.weight", "comfyui"),
    ("lora_transformer_proj_out.lora_down.weight", "onetrainer"),
    ("double_blocks.0.processor.proj_lora1.down.weight", "xlabs"),
    ("single_blocks.0.linear1.lora_A.weight", "bfl"),
    ("lycoris_single_blocks_0_linear1.hada_w1_a", "lycoris-loha"),
    ("lora_unet_single_blocks_0_linear1.lokr_w1", "lycoris-lokr"),
    ("something.else", "unknown"),
])
def test_format_is_detected_from_key_names(key, fmt):
    assert detect_format([key]) == fmt
