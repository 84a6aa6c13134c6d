"""`fluxai lora info|convert` and `fluxai generate --lora`, run in-process."""

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from fluxai.cli.main import main
from fluxai.config import PRESETS
from fluxai.lora import TargetTable, convert, read_lora_file
from fluxai.metadata import read_params

TEST = PRESETS["flux-test-dev"].transformer
H = TEST.hidden_size


def rand(*shape, seed):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.fixture
def kohya_file(tmp_path):
    sd = {"lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight": rand(4, H, seed=1),
          "lora_unet_double_blocks_0_img_attn_qkv.lora_up.weight": rand(3 * H, 4, seed=2),
          "lora_unet_double_blocks_0_img_attn_qkv.alpha": torch.tensor(2.0),
          "lora_unet_single_blocks_1_linear2.lora_down.weight": rand(4, 5 * H, seed=3),
          "lora_unet_single_blocks_1_linear2.lora_up.weight": rand(H, 4, seed=4),
          "lora_unet_single_blocks_1_linear2.alpha": torch.tensor(2.0),
          "lora_te1_text_model_encoder_layers_0_mlp_fc1.lora_down.weight": rand(4, 8, seed=5)}
    path = tmp_path / "kohya.safetensors"
    save_file(sd, path)
    return path


def test_info_prints_format_rank_alpha_key_counts_and_targets(kohya_file, capsys):
    assert main(["lora", "info", str(kohya_file), "--model", "flux-test-dev"]) == 0
    out = capsys.readouterr().out
    assert "format:    kohya" in out and "rank:      4" in out and "alpha:     2" in out
    assert "keys:      6/7 map onto flux-test-dev" in out
    assert "1 text-encoder keys" in out
    assert "double_blocks.*.img_attn.qkv" in out and "single_blocks.*.linear2" in out


def test_info_against_the_wrong_base_model_says_so(kohya_file, capsys):
    main(["lora", "info", str(kohya_file)])
    out = capsys.readouterr().out
    assert "0/7 map onto flux-dev" in out and "--model" in out


def summed(path):
    tensors, meta = read_lora_file(path)
    state = convert(tensors, TargetTable(TEST), meta)
    table = TargetTable(TEST)
    out = {}
    for p in state.parts:
        fan_in, rows = table.modules[p.module]
        d = out.setdefault(p.module, torch.zeros(rows, fan_in))
        d[p.rows[0]:p.rows[1]] += p.delta_weight()
    return state, out


def test_convert_kohya_to_diffusers_and_back_keeps_every_update(kohya_file, tmp_path, capsys):
    diff, back = tmp_path / "diffusers.safetensors", tmp_path / "back.safetensors"
    assert main(["lora", "convert", str(kohya_file), str(diff), "--to", "diffusers",
                 "--model", "flux-test-dev"]) == 0
    assert main(["lora", "convert", str(diff), str(back), "--to", "kohya",
                 "--model", "flux-test-dev"]) == 0
    assert "1 text-encoder keys not carried over" in capsys.readouterr().out
    original, mid, final = summed(kohya_file), summed(diff), summed(back)
    assert (mid[0].format, final[0].format) == ("diffusers", "kohya")
    for module, want in original[1].items():
        assert torch.allclose(mid[1][module], want, atol=1e-5)
        assert torch.allclose(final[1][module], want, atol=1e-5)
    meta = json.loads(read_lora_file(diff)[1]["lora_adapter_metadata"])
    assert (meta["transformer.r"], meta["transformer.lora_alpha"]) == (4, 2.0)


def test_convert_refuses_to_overwrite(kohya_file, capsys):
    assert main(["lora", "convert", str(kohya_file), str(kohya_file), "--to", "diffusers"]) == 1
    assert "already exists" in capsys.readouterr().err


def test_convert_of_a_file_that_does_not_fit_writes_nothing(kohya_file, tmp_path, capsys):
    out = tmp_path / "out.safetensors"
    assert main(["lora", "convert", str(kohya_file), str(out), "--to", "diffusers"]) == 1
    err = capsys.readouterr().err.strip()
    assert "kohya" in err and "\n" not in err
    assert not out.exists() and not list(tmp_path.glob(".*tmp"))


def generate(tmp_path, name, *extra):
    out = tmp_path / name
    assert main(["generate", "a red star", "--model", "flux-test-dev", "--size", "32x32",
                 "--steps", "2", "--seed", "3", "--quiet", "-o", str(out), *extra]) == 0
    return out


def pixels(path):
    return np.asarray(Image.open(path))


def test_generate_with_a_lora_records_it_and_from_image_replays_it(kohya_file, tmp_path):
    base = generate(tmp_path, "base.png")
    with_lora = generate(tmp_path, "lora.png", "--lora", f"{kohya_file}:0.5")
    assert not np.array_equal(pixels(base), pixels(with_lora))
    [record] = read_params(with_lora)["loras"]
    assert record["scale"] == 0.5 and record["path"] == str(kohya_file.resolve())
    replay = tmp_path / "replay.png"
    assert main(["generate", "--from-image", str(with_lora), "--quiet", "-o", str(replay)]) == 0
    assert np.array_equal(pixels(replay), pixels(with_lora))


def test_generate_lora_scale_must_be_a_number(kohya_file, tmp_path, capsys):
    code = main(["generate", "x", "--model", "flux-test-dev", "--lora", f"{kohya_file}:big",
                 "-o", str(tmp_path / "x.png")])
    assert code == 1
    assert "must be a number" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_eval_shapes_runs_with_a_lora_and_records_it(kohya_file, tmp_path):
    from fluxai.lora.data import shape_eval_prompts, write_eval_prompts

    prompts = write_eval_prompts(tmp_path / "hex.jsonl", shape_eval_prompts("hexagon", 1))
    out = tmp_path / "eval"
    assert main(["eval", "shapes", "--model", "flux-test-dev", "--prompts", str(prompts),
                 "--limit", "2", "--seeds", "1", "--steps", "1", "--quiet", "--out", str(out),
                 "--lora", f"{kohya_file}:0.5"]) == 0
    report = json.loads((out / "results.json").read_text())
    assert report["loras"][0]["scale"] == 0.5
    assert all("hexagon" in r["prompt"] for r in report["records"])
