"""Every checkpoint layout loads into the same BFL-named model, and everything else is refused
with one line naming the first offending tensor."""

import json
import struct

import pytest
import torch
from reference_weights import load_seeded
from safetensors.torch import load_file, save_file

from fluxai.checkpoints import (
    CheckpointError,
    load_autoencoder,
    load_transformer,
    save_autoencoder,
    save_transformer,
)
from fluxai.checkpoints.fp8 import UpcastLinear
from fluxai.checkpoints.safetensors_io import write_safetensors
from fluxai.config import AutoEncoderConfig, FluxConfig
from fluxai.model.autoencoder import AutoEncoder
from fluxai.model.transformer import Flux


@pytest.fixture(scope="module")
def model() -> Flux:
    cfg = FluxConfig(in_channels=64, out_channels=64, vec_in_dim=32, context_in_dim=48,
                     hidden_size=64, num_heads=4, depth=2, depth_single_blocks=2,
                     axes_dim=(4, 6, 6))
    return load_seeded(Flux(cfg), seed=41).eval()


@pytest.fixture(scope="module")
def ae() -> AutoEncoder:
    cfg = AutoEncoderConfig(ch=32, ch_mult=(1, 2, 2), num_res_blocks=1, z_channels=16,
                            scale_factor=0.5, shift_factor=-0.25)
    return load_seeded(AutoEncoder(cfg), seed=42).eval()


@pytest.fixture(scope="module")
def bfl_file(model, tmp_path_factory):
    path = tmp_path_factory.mktemp("bfl") / "flux.safetensors"
    save_transformer(model, path)
    return path


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for key in sa:
        assert torch.equal(sa[key].float(), sb[key].float()), key


def forward(model: Flux) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    img = torch.randn(1, 4, 64, generator=gen)
    ids = torch.zeros(1, 4, 3)
    ids[0, :, 2] = torch.arange(4)
    with torch.no_grad():
        return model(img, ids, torch.randn(1, 3, 48, generator=gen), torch.zeros(1, 3, 3),
                     torch.tensor([0.5]), torch.randn(1, 32, generator=gen), torch.tensor([3.0]))


def rewrite(src, dst, edit):
    tensors = load_file(src)
    edit(tensors)
    save_file(tensors, dst, metadata={"fluxai_config": json.dumps(
        {"axes_dim": [4, 6, 6]})})
    return dst


# -- the layouts --------------------------------------------------------------------------------

def test_bfl_file_round_trips_weights_and_config(model, bfl_file):
    loaded = load_transformer(bfl_file)
    assert loaded.config == model.config
    assert_same_weights(loaded, model)


def test_comfyui_prefixed_file_loads_its_transformer_and_autoencoder(model, ae, bfl_file,
                                                                      tmp_path):
    ae_path = tmp_path / "ae.safetensors"
    save_autoencoder(ae, ae_path)
    tensors = {f"model.diffusion_model.{k}": v for k, v in load_file(bfl_file).items()}
    tensors |= {f"first_stage_model.{k}": v for k, v in load_file(ae_path).items()}
    tensors["cond_stage_model.transformer.text_model.embeddings.weight"] = torch.zeros(2, 2)
    path = tmp_path / "comfy.safetensors"
    save_file(tensors, path, metadata={"fluxai_config": json.dumps(model.config.to_dict())})
    assert_same_weights(load_transformer(path), model)
    assert_same_weights(load_autoencoder(path, config=ae.config), ae)


def test_diffusers_folder_loads_to_the_same_weights(model, tmp_path):
    save_transformer(model, tmp_path / "transformer", layout="diffusers")
    assert_same_weights(load_transformer(tmp_path / "transformer"), model)


def test_sharded_diffusers_folder_with_index_loads(model, tmp_path):
    save_transformer(model, tmp_path / "single", layout="diffusers")
    tensors = load_file(tmp_path / "single" / "diffusion_pytorch_model.safetensors")
    folder = tmp_path / "sharded"
    folder.mkdir()
    (folder / "config.json").write_text((tmp_path / "single" / "config.json").read_text())
    names = list(tensors)
    shards = {"diffusion_pytorch_model-00001-of-00002.safetensors": names[::2],
              "diffusion_pytorch_model-00002-of-00002.safetensors": names[1::2]}
    weight_map = {}
    for shard, keys in shards.items():
        save_file({k: tensors[k] for k in keys}, folder / shard)
        weight_map |= dict.fromkeys(keys, shard)
    (folder / "diffusion_pytorch_model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": weight_map}))
    assert_same_weights(load_transformer(folder), model)


def test_diffusers_pipeline_folder_gives_each_part(model, ae, tmp_path):
    save_transformer(model, tmp_path / "transformer", layout="diffusers")
    save_autoencoder(ae, tmp_path / "vae", layout="diffusers")
    (tmp_path / "model_index.json").write_text("{}")
    assert_same_weights(load_transformer(tmp_path), model)
    loaded = load_autoencoder(tmp_path)
    assert loaded.config == ae.config
    assert_same_weights(loaded, ae)


def test_autoencoder_round_trips_with_its_scale_and_shift(ae, tmp_path):
    save_autoencoder(ae, tmp_path / "ae.safetensors")
    loaded = load_autoencoder(tmp_path / "ae.safetensors")
    assert (loaded.config.scale_factor, loaded.config.shift_factor) == (0.5, -0.25)
    assert_same_weights(loaded, ae)


def test_autoencoder_norm_groups_survive_a_round_trip(tmp_path):
    narrow = AutoEncoder(AutoEncoderConfig(ch=32, ch_mult=(1, 2), num_res_blocks=1,
                                           z_channels=4, norm_groups=8))
    save_autoencoder(narrow, tmp_path / "ae.safetensors")
    loaded = load_autoencoder(tmp_path / "ae.safetensors")
    assert loaded.config.norm_groups == 8
    assert loaded.decoder.norm_out.num_groups == 8


def test_dtype_converts_every_weight_at_load(bfl_file):
    loaded = load_transformer(bfl_file, dtype=torch.bfloat16)
    assert {p.dtype for p in loaded.parameters()} == {torch.bfloat16}


def test_saving_in_a_dtype_keeps_that_dtype_at_load(model, tmp_path):
    save_transformer(model, tmp_path / "half.safetensors", dtype=torch.float16)
    assert {p.dtype for p in load_transformer(tmp_path / "half.safetensors").parameters()} \
        == {torch.float16}


def test_metadata_given_at_save_is_in_the_file(model, tmp_path):
    from fluxai.registry import _read_model_metadata

    save_transformer(model, tmp_path / "t.safetensors",
                     metadata={"fluxai_model": json.dumps({"name": "mine"})})
    assert _read_model_metadata(tmp_path / "t.safetensors") == {"name": "mine"}


@pytest.mark.parametrize("fp8", [torch.float8_e4m3fn, torch.float8_e5m2])
def test_fp8_file_upcasts_at_load_by_default(model, tmp_path, fp8):
    save_transformer(model, tmp_path / "fp8.safetensors", dtype=fp8)
    loaded = load_transformer(tmp_path / "fp8.safetensors")
    assert {p.dtype for p in loaded.parameters()} == {torch.bfloat16}
    expected = model.img_in.weight.to(fp8).to(torch.bfloat16)
    assert torch.equal(loaded.img_in.weight, expected)


@pytest.mark.parametrize("fp8", [torch.float8_e4m3fn, torch.float8_e5m2])
def test_fp8_kept_in_fp8_computes_what_the_upcast_model_computes(model, tmp_path, fp8):
    save_transformer(model, tmp_path / "fp8.safetensors", dtype=fp8)
    kept = load_transformer(tmp_path / "fp8.safetensors", dtype=torch.float32, fp8="keep")
    upcast = load_transformer(tmp_path / "fp8.safetensors", dtype=torch.float32)
    assert kept.double_blocks[0].img_attn.qkv.weight.dtype == fp8
    assert isinstance(kept.double_blocks[0].img_attn.qkv, UpcastLinear)
    assert kept.double_blocks[0].img_attn.norm.query_norm.scale.dtype == torch.float32
    assert torch.allclose(forward(kept), forward(upcast), atol=1e-6)


def test_fp8_weights_survive_conversion_to_diffusers_and_back(model, tmp_path):
    save_transformer(model, tmp_path / "fp8.safetensors", dtype=torch.float8_e4m3fn)
    kept = load_transformer(tmp_path / "fp8.safetensors", fp8="keep")
    save_transformer(kept, tmp_path / "diffusers", layout="diffusers")
    again = load_transformer(tmp_path / "diffusers", fp8="keep")
    assert again.img_in.weight.dtype == torch.float8_e4m3fn
    assert_same_weights(again, kept)


def test_config_argument_supplies_rope_axes_a_bare_file_lacks(model, bfl_file, tmp_path):
    bare = tmp_path / "bare.safetensors"
    save_file(load_file(bfl_file), bare)  # no metadata: head size 16 is not FLUX.1's
    with pytest.raises(CheckpointError, match="RoPE axes"):
        load_transformer(bare)
    assert_same_weights(load_transformer(bare, config=model.config), model)


# -- refusals -----------------------------------------------------------------------------------

def refused(fn, *args, **kwargs) -> str:
    with pytest.raises(CheckpointError) as info:
        fn(*args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


def test_a_missing_tensor_is_refused_by_name(bfl_file, tmp_path):
    path = rewrite(bfl_file, tmp_path / "m.safetensors",
                   lambda t: t.pop("double_blocks.1.txt_mlp.2.bias"))
    assert "missing tensor double_blocks.1.txt_mlp.2.bias" in refused(load_transformer, path)


def test_an_unexpected_tensor_is_refused_by_name(bfl_file, tmp_path):
    path = rewrite(bfl_file, tmp_path / "u.safetensors",
                   lambda t: t.update({"lora.up.weight": torch.zeros(2)}))
    assert "unexpected tensor lora.up.weight" in refused(load_transformer, path)


def test_a_wrong_shape_is_refused_by_name(bfl_file, tmp_path):
    path = rewrite(bfl_file, tmp_path / "s.safetensors",
                   lambda t: t.update({"single_blocks.1.linear2.bias": torch.zeros(65)}))
    message = refused(load_transformer, path)
    assert "single_blocks.1.linear2.bias has shape [65], expected [64]" in message


def test_a_truncated_file_is_refused_naming_the_cut_tensor(bfl_file, tmp_path):
    data = bfl_file.read_bytes()
    path = tmp_path / "cut.safetensors"
    path.write_bytes(data[:-100])
    (n,) = struct.unpack("<Q", data[:8])
    last = list(json.loads(data[8:8 + n]))[-1]  # our writer lays tensors out in header order
    message = refused(load_transformer, path)
    assert "truncated" in message and f"tensor {last} " in message


def test_a_foreign_safetensors_file_is_refused(tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"classifier.weight": torch.zeros(2, 2)}, path)
    message = refused(load_transformer, path)
    assert "not a Flux transformer checkpoint (first tensor: classifier.weight)" in message


def test_a_file_that_is_not_safetensors_is_refused(tmp_path):
    path = tmp_path / "notes.safetensors"
    path.write_text("these are not weights, just some text that is long enough")
    assert "not a safetensors file" in refused(load_transformer, path)


def test_pickle_checkpoints_are_refused_unread(tmp_path):
    path = tmp_path / "model.ckpt"
    path.write_bytes(b"\x80\x04anything")
    assert "pickle" in refused(load_transformer, path)


def test_an_autoencoder_file_is_not_a_transformer(ae, tmp_path):
    save_autoencoder(ae, tmp_path / "ae.safetensors")
    message = refused(load_transformer, tmp_path / "ae.safetensors")
    assert "a Flux autoencoder checkpoint, not a transformer" in message


def test_a_diffusers_folder_with_a_missing_shard_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "FluxTransformer2DModel"}))
    shard = "diffusion_pytorch_model-00001-of-00001.safetensors"
    (tmp_path / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps(
        {"weight_map": {"x_embedder.weight": shard}}))
    message = refused(load_transformer, tmp_path)
    assert "diffusion_pytorch_model-00001-of-00001.safetensors" in message
    assert "x_embedder.weight" in message


def test_a_diffusers_folder_of_another_model_is_refused(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps({"_class_name": "UNet2DConditionModel"}))
    save_file({"conv_in.weight": torch.zeros(1)}, tmp_path / "diffusion_pytorch_model.safetensors")
    assert "UNet2DConditionModel" in refused(load_transformer, tmp_path)


def test_a_missing_path_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_transformer(tmp_path / "nowhere.safetensors")


def test_a_failed_save_leaves_no_file(tmp_path):
    def explode():
        raise RuntimeError("disk full")

    with pytest.raises(RuntimeError):
        write_safetensors(tmp_path / "x.safetensors", {"a": ((1,), torch.float32)},
                          [("a", explode)])
    assert list(tmp_path.iterdir()) == []


def test_a_file_missing_a_whole_block_contradicts_its_recorded_config(model, bfl_file, tmp_path):
    tensors = {k: v for k, v in load_file(bfl_file).items() if not k.startswith("single_blocks.1.")}
    path = tmp_path / "short.safetensors"
    save_file(tensors, path, metadata={"fluxai_config": json.dumps(model.config.to_dict())})
    message = refused(load_transformer, path)
    assert "records depth_single_blocks=2 but its tensors give depth_single_blocks=1" in message


def test_a_diffusers_config_that_disagrees_with_the_weights_is_refused(model, tmp_path):
    save_transformer(model, tmp_path / "t", layout="diffusers")
    config = json.loads((tmp_path / "t" / "config.json").read_text())
    (tmp_path / "t" / "config.json").write_text(json.dumps({**config, "num_layers": 19}))
    assert "records depth=19 but its tensors give depth=2" in refused(load_transformer,
                                                                      tmp_path / "t")


def test_same_dtype_tensors_are_views_of_the_mapped_file_not_copies(bfl_file):
    import ctypes

    from fluxai.checkpoints import open_checkpoint

    ckpt = open_checkpoint(bfl_file)
    tensor = ckpt.tensor("img_in.weight", torch.float32)
    file, name = ckpt.sources["img_in.weight"].pieces[0]
    mapping = ctypes.addressof(ctypes.c_char.from_buffer(file._mapped()))
    assert tensor.data_ptr() == mapping + file.entries[name].start


def test_norm_groups_that_do_not_divide_a_width_are_refused():
    with pytest.raises(ValueError, match="norm_groups 48 must divide every autoencoder width"):
        AutoEncoderConfig(ch=32, ch_mult=(1, 2), norm_groups=48)
