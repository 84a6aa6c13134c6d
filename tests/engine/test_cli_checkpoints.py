"""`fluxai info` and `fluxai convert` from the command line: what users see and get."""

import json

import pytest
import torch
from reference_weights import load_seeded
from safetensors.torch import save_file

from fluxai.checkpoints import (
    load_autoencoder,
    load_transformer,
    save_autoencoder,
    save_transformer,
)
from fluxai.cli.main import main
from fluxai.config import AutoEncoderConfig, FluxConfig
from fluxai.model.autoencoder import AutoEncoder
from fluxai.model.transformer import Flux


@pytest.fixture(scope="module")
def model() -> Flux:
    cfg = FluxConfig(in_channels=64, out_channels=64, vec_in_dim=32, context_in_dim=48,
                     hidden_size=64, num_heads=4, depth=1, depth_single_blocks=2,
                     axes_dim=(4, 6, 6), guidance_embed=False)
    return load_seeded(Flux(cfg), seed=51).eval()


@pytest.fixture
def bfl_file(model, tmp_path):
    path = tmp_path / "flux.safetensors"
    save_transformer(model, path, dtype=torch.bfloat16)
    return path


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(("name", "count"), [("flux-dev", "11,901,408,320"),
                                             ("flux-schnell", "11,891,178,560")])
def test_info_on_a_release_prints_its_parameter_count(capsys, name, count):
    code, out, _ = run(capsys, "info", name)
    assert code == 0
    assert f"parameters: {count}" in out


def test_info_on_a_file_prints_layout_config_dtype_and_parameters(capsys, model, bfl_file):
    code, out, _ = run(capsys, "info", str(bfl_file), "--json")
    info = json.loads(out)
    assert code == 0
    assert (info["kind"], info["layout"], info["dtype"]) == ("transformer", "bfl", "bfloat16")
    assert info["parameters"] == sum(p.numel() for p in model.parameters())
    assert info["config"] == model.config.to_dict()
    assert info["variant"].startswith("schnell")


def test_info_on_a_diffusers_folder_names_the_layout(capsys, model, tmp_path):
    save_transformer(model, tmp_path / "transformer", layout="diffusers")
    code, out, _ = run(capsys, "info", str(tmp_path / "transformer"))
    assert code == 0
    assert "layout: diffusers" in out and "kind: transformer" in out


def test_info_on_a_file_that_is_not_flux_fails_cleanly(capsys, tmp_path):
    path = tmp_path / "other.safetensors"
    save_file({"resnet.fc.weight": torch.zeros(3, 3)}, path)
    code, out, err = run(capsys, "info", str(path))
    assert code != 0 and out == ""
    assert err.count("\n") == 1 and "not a Flux" in err and "Traceback" not in err


def test_info_on_a_missing_path_fails_cleanly(capsys, tmp_path):
    code, _, err = run(capsys, "info", str(tmp_path / "nothing"))
    assert code != 0 and "no such model, file or folder" in err


def test_convert_to_diffusers_and_back_reproduces_the_file(capsys, model, bfl_file, tmp_path):
    assert run(capsys, "convert", str(bfl_file), str(tmp_path / "d"), "--to", "diffusers")[0] == 0
    assert run(capsys, "convert", str(tmp_path / "d"), str(tmp_path / "back.safetensors"),
               "--to", "bfl")[0] == 0
    original = load_transformer(bfl_file).state_dict()
    back = load_transformer(tmp_path / "back.safetensors").state_dict()
    assert all(torch.equal(original[k], back[k]) for k in original)
    assert (tmp_path / "d" / "config.json").is_file()


def test_converted_folder_runs_in_diffusers_to_our_outputs(capsys, model, tmp_path):
    diffusers = pytest.importorskip("diffusers")
    save_transformer(model, tmp_path / "flux.safetensors")
    run(capsys, "convert", str(tmp_path / "flux.safetensors"), str(tmp_path / "d"),
        "--to", "diffusers")
    theirs = diffusers.FluxTransformer2DModel.from_pretrained(tmp_path / "d").eval()
    gen = torch.Generator().manual_seed(2)
    img, txt, y = (torch.randn(1, 6, 64, generator=gen), torch.randn(1, 3, 48, generator=gen),
                   torch.randn(1, 32, generator=gen))
    ids = torch.zeros(6, 3)
    ids[:, 2] = torch.arange(6)
    t = torch.tensor([0.7])
    with torch.no_grad():
        want = theirs(hidden_states=img, encoder_hidden_states=txt, pooled_projections=y,
                      timestep=t, img_ids=ids, txt_ids=torch.zeros(3, 3),
                      return_dict=False)[0]
        got = model(img, ids[None], txt, torch.zeros(1, 3, 3), t, y)
    assert (got - want).abs().max().item() <= 1e-5


def test_convert_handles_autoencoders(capsys, tmp_path):
    ae = load_seeded(AutoEncoder(AutoEncoderConfig(ch=32, ch_mult=(1, 2), num_res_blocks=1)),
                     seed=52)
    save_autoencoder(ae, tmp_path / "ae.safetensors")
    code, out, _ = run(capsys, "convert", str(tmp_path / "ae.safetensors"), str(tmp_path / "vae"),
                       "--to", "diffusers", "--dtype", "float16")
    assert code == 0 and "autoencoder" in out
    loaded = load_autoencoder(tmp_path / "vae")
    assert loaded.decoder.conv_out.weight.dtype == torch.float16
    assert torch.equal(loaded.decoder.conv_out.weight, ae.decoder.conv_out.weight.half())


def test_convert_refuses_to_overwrite(capsys, bfl_file, tmp_path):
    (tmp_path / "taken.safetensors").write_bytes(b"x")
    code, _, err = run(capsys, "convert", str(bfl_file), str(tmp_path / "taken.safetensors"),
                       "--to", "bfl")
    assert code != 0 and "already exists" in err
    assert (tmp_path / "taken.safetensors").read_bytes() == b"x"


def test_convert_to_bfl_needs_a_safetensors_name(capsys, bfl_file, tmp_path):
    code, _, err = run(capsys, "convert", str(bfl_file), str(tmp_path / "out"), "--to", "bfl")
    assert code != 0 and ".safetensors" in err
    assert not (tmp_path / "out").exists()


def test_info_on_a_model_folder_describes_both_parts(capsys, model, tmp_path):
    ae = AutoEncoder(AutoEncoderConfig(ch=32, ch_mult=(1, 2), num_res_blocks=1))
    save_transformer(model, tmp_path / "transformer.safetensors")
    save_autoencoder(ae, tmp_path / "ae.safetensors")
    code, out, _ = run(capsys, "info", str(tmp_path), "--json")
    info = json.loads(out)
    assert code == 0
    assert (info["transformer"]["kind"], info["autoencoder"]["kind"]) == ("transformer",
                                                                          "autoencoder")
    assert info["autoencoder"]["parameters"] == sum(p.numel() for p in ae.parameters())
