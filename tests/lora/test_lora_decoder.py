"""Decoder adapters: LoCon updates to the autoencoder's decoder convolutions, carried in the
same LoRA file as the transformer's and loaded, fused and removed with them."""

import json

import pytest
import torch
from lora_helpers import images, small_pipe
from safetensors.torch import save_file

from fluxai.cli.main import main
from fluxai.lora import LoraError, read_lora_file, save_lora

H, R = 64, 4


@pytest.fixture
def pipe():
    return small_pipe()


def conv_shape(pipe, name):
    return pipe.vae.decoder.get_submodule(name).weight.shape


def both_parts(pipe, seed=1, decoder_out=None):
    """A transformer LoRA on one layer plus decoder updates on two convolutions."""
    g = torch.Generator().manual_seed(seed)
    sd = {"transformer.single_transformer_blocks.0.attn.to_v.lora_A.weight":
          torch.randn(R, H, generator=g) * 0.3,
          "transformer.single_transformer_blocks.0.attn.to_v.lora_B.weight":
          torch.randn(H, R, generator=g) * 0.3}
    for name in ("conv_in", "up.0.block.0.conv1"):
        out, cin, k, _ = conv_shape(pipe, name)
        sd[f"vae.decoder.{name}.lora_A.weight"] = torch.randn(R, cin, k, k, generator=g) * 0.1
        sd[f"vae.decoder.{name}.lora_B.weight"] = torch.randn(
            decoder_out or out, R, 1, 1, generator=g) * 0.1
    return sd


def write(tmp_path, sd, name="l.safetensors", alpha=None):
    meta = {"lora_adapter_metadata": json.dumps({"vae.lora_alpha": alpha})} if alpha else None
    save_file(sd, tmp_path / name, metadata=meta)
    return tmp_path / name


def decoder_only(sd):
    return {k: v for k, v in sd.items() if k.startswith("vae.")}


def test_a_decoder_update_changes_the_image_and_fusing_gives_the_same_image(pipe, tmp_path):
    base = images(pipe)
    report = pipe.load_lora_weights(str(write(tmp_path, decoder_only(both_parts(pipe)))))
    assert (report.decoder_modules, report.mapped_keys) == (2, 4)
    runtime = images(pipe)
    pipe.fuse_lora()
    assert (runtime - base).abs().max() > 1e-2
    assert torch.allclose(images(pipe), runtime, atol=1e-5)


def test_unfuse_and_unload_restore_the_decoder_bit_for_bit(pipe, tmp_path):
    before = {k: v.clone() for k, v in pipe.vae.state_dict().items()}
    base = images(pipe)
    pipe.load_lora_weights(str(write(tmp_path, both_parts(pipe))), adapter_name="a")
    pipe.fuse_lora(lora_scale=0.7)
    assert not torch.equal(pipe.vae.decoder.conv_in.weight, before["decoder.conv_in.weight"])
    pipe.unfuse_lora()
    assert all(torch.equal(v, before[k]) for k, v in pipe.vae.state_dict().items())
    pipe.unload_lora_weights()
    assert torch.equal(images(pipe), base)


def test_the_decoder_part_follows_the_adapter_weight(pipe, tmp_path):
    base = images(pipe)
    pipe.load_lora_weights(str(write(tmp_path, decoder_only(both_parts(pipe)))), "d")
    pipe.set_adapters(["d"], adapter_weights=[0.0])
    assert torch.equal(images(pipe), base)


def test_alpha_from_the_metadata_scales_the_decoder_update(pipe, tmp_path):
    sd = decoder_only(both_parts(pipe))
    pipe.load_lora_weights(str(write(tmp_path, sd, "one.safetensors")), "one")
    one = pipe.lora.parts["one"][0].delta_weight()
    pipe.load_lora_weights(str(write(tmp_path, sd, "two.safetensors", alpha=2 * R)), "two")
    assert torch.allclose(pipe.lora.parts["two"][0].delta_weight(), 2 * one)


def test_a_lora_whose_decoder_part_does_not_fit_is_refused_and_nothing_changes(pipe, tmp_path):
    base = images(pipe)
    bad = write(tmp_path, both_parts(pipe, decoder_out=7))
    with pytest.raises(LoraError, match=r"do not fit .*vae\.decoder\.conv_in\.lora_A"):
        pipe.load_lora_weights(str(bad), adapter_name="bad")
    assert pipe.get_list_adapters() == {"transformer": []}
    assert torch.equal(images(pipe), base)


def test_a_trained_decoder_adapter_saves_and_reloads_to_the_same_image(pipe, tmp_path):
    convs = list(pipe.lora.table.convs)
    params = pipe.lora.add_trainable("t", convs, 3, 6.0)
    with torch.no_grad():
        for i, p in enumerate(params):
            p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(i)) * 0.05)
    trained = images(pipe)
    path = save_lora(pipe.lora.state("t"), tmp_path / "t.safetensors", pipe.lora.table)
    tensors, meta = read_lora_file(path)
    assert len(tensors) == 2 * len(convs)
    assert json.loads(meta["lora_adapter_metadata"])["vae.lora_alpha"] == 6.0
    pipe.unload_lora_weights()
    pipe.load_lora_weights(str(path), adapter_name="again")
    assert pipe.get_list_adapters() == {"transformer": [], "vae": ["again"]}
    assert torch.allclose(images(pipe), trained, atol=1e-6)


def test_lora_info_reports_the_decoder_convolutions(pipe, tmp_path, capsys):
    path = write(tmp_path, both_parts(pipe), alpha=8.0)
    assert main(["lora", "info", str(path), "--model", "flux-test-dev"]) == 0
    out = capsys.readouterr().out
    assert "keys:      6/6 map onto flux-test-dev" in out
    assert "decoder:   2 convolutions of the autoencoder's decoder, rank 4, alpha 8" in out
    assert "targets:   1 transformer layers" in out


def test_converting_a_lora_with_decoder_parts_to_kohya_is_refused(pipe, tmp_path, capsys):
    src = write(tmp_path, both_parts(pipe))
    assert main(["lora", "convert", str(src), str(tmp_path / "k.safetensors"), "--to", "kohya",
                 "--model", "flux-test-dev"]) != 0
    assert "2 decoder convolutions, which kohya's layout has no names for" in \
        capsys.readouterr().err
    assert not (tmp_path / "k.safetensors").exists()
