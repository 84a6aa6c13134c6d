import json
import re

import pytest
import torch
from safetensors.torch import save_file

from fluxai.cli.main import main
from fluxai.pipeline import FluxPipeline
from fluxai.shapes.binding import ARRANGEMENTS, binding_gaps, probe_pairs
from fluxai.shapes.judge import judge
from fluxai.shapes.parse import parse_prompt
from fluxai.shapes.scenes import exchange_shapes
from fluxai.shapes.world import WORLD, ObjectSpec, PromptSpec


@pytest.fixture(scope="module")
def pipe():
    return FluxPipeline.from_pretrained("flux-test-dev")


def test_exchanging_shapes_keeps_colours_sizes_and_places():
    spec = PromptSpec("position", (ObjectSpec("star", "red", "small"),
                                   ObjectSpec("circle", "blue")), relation="above")
    swapped = exchange_shapes(spec)
    assert [o.shape for o in swapped.objects] == ["circle", "star"]
    assert [(o.color, o.size) for o in swapped.objects] == [("red", "small"), ("blue", None)]
    assert swapped.relation == "above"


def test_exchanging_shapes_needs_two_objects():
    with pytest.raises(ValueError, match="needs two objects"):
        exchange_shapes(PromptSpec("single_object", (ObjectSpec("star"),)))


@pytest.mark.parametrize("arrangement", list(ARRANGEMENTS))
def test_exchanged_captions_differ_only_in_which_shape_is_named_where(arrangement):
    shape_words = "|".join(sorted(WORLD.shapes + list(WORLD.plurals.values()), key=len,
                                  reverse=True))
    for _, text, swapped in probe_pairs(arrangement, 12, seed=3):
        own = re.findall(rf"\b({shape_words})\b", text)
        assert len(set(own)) == 2
        assert re.findall(rf"\b({shape_words})\b", swapped) == own[::-1]
        assert re.sub(shape_words, "S", text) == re.sub(shape_words, "S", swapped)


@pytest.mark.parametrize("arrangement", ["left of", "right of", "above", "below"])
def test_each_render_answers_its_caption_and_not_the_exchanged_one(arrangement):
    for image, text, swapped in probe_pairs(arrangement, 6, seed=1):
        assert judge(image, parse_prompt(text)).correct
        assert not judge(image, parse_prompt(swapped)).correct


def test_unknown_arrangement_is_rejected():
    with pytest.raises(ValueError, match="arrangement must be one of"):
        probe_pairs("diagonal", 1)


def test_a_model_that_reads_the_caption_binds_and_one_that_does_not_has_no_gap(pipe):
    gaps = binding_gaps(pipe, scenes=4, timesteps=(0.7,), batch_size=3)
    assert [g.arrangement for g in gaps] == list(ARRANGEMENTS)
    assert all(abs(g.gap) > 1e-6 for g in gaps)
    deaf = FluxPipeline.from_pretrained("flux-test-dev")
    with torch.no_grad():
        for layer in (deaf.transformer.txt_in, deaf.transformer.vector_in.in_layer):
            layer.weight.zero_()
            layer.bias.zero_()
    assert all(g.gap == 0.0 for g in binding_gaps(deaf, scenes=4, timesteps=(0.7,)))


def test_cli_prints_the_table_then_json(capsys):
    code = main(["eval", "binding", "--model", "flux-test-dev", "--scenes", "2", "--t", "0.5"])
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split()[0] == "arrangement"
    summary = json.loads(lines[-1])
    assert [g["arrangement"] for g in summary["gaps"]] == list(ARRANGEMENTS)


def test_cli_measures_with_a_lora_applied(tmp_path, capsys):
    hidden = 64  # flux-test-dev's width
    g = torch.Generator().manual_seed(0)
    path = tmp_path / "kohya.safetensors"
    save_file({"lora_unet_double_blocks_0_img_attn_qkv.lora_down.weight":
               torch.randn(4, hidden, generator=g),
               "lora_unet_double_blocks_0_img_attn_qkv.lora_up.weight":
               torch.randn(3 * hidden, 4, generator=g)}, path)
    losses = []
    for extra in ([], ["--lora", str(path)]):
        argv = ["eval", "binding", "--model", "flux-test-dev", "--scenes", "2", "--t", "0.5"]
        assert main(argv + extra) == 0
        summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        losses.append([g["loss"] for g in summary["gaps"]])
    assert losses[0] != losses[1]


def test_cli_rejects_times_outside_the_trajectory(capsys):
    assert main(["eval", "binding", "--model", "flux-test-dev", "--t", "0"]) == 1
    err = capsys.readouterr().err.strip()
    assert "--t values must lie in (0, 1]" in err and len(err.splitlines()) == 1
