"""`fluxai generate`: PNGs that carry their parameters, exact replay, one-line errors."""

import json

import numpy as np
import pytest
from PIL import Image

from fluxai.cli.main import main
from fluxai.registry import DEFAULT_MODEL, shipped_models

MODEL = ["--model", "flux-test-dev", "--quiet"]


def _params(path) -> dict:
    with Image.open(path) as img:
        return json.loads(img.text["fluxai"])


def test_png_carries_the_prompt_and_every_generation_parameter(tmp_path):
    out = tmp_path / "a.png"
    assert main(["generate", "a red circle", *MODEL, "--seed", "7", "--steps", "2",
                 "--size", "64x48", "-o", str(out)]) == 0
    params = _params(out)
    assert params["prompt"] == "a red circle" and params["seed"] == 7
    assert (params["width"], params["height"], params["num_inference_steps"]) == (64, 48, 2)
    assert params["model_ref"] == "flux-test-dev" and "guidance_scale" in params
    assert Image.open(out).size == (64, 48)


def test_from_image_replays_the_identical_image(tmp_path):
    first, again = tmp_path / "first.png", tmp_path / "again.png"
    assert main(["generate", "two blue squares", *MODEL, "--steps", "2", "-o", str(first)]) == 0
    assert main(["generate", "--from-image", str(first), "--quiet", "-o", str(again)]) == 0
    assert np.array_equal(np.asarray(Image.open(first)), np.asarray(Image.open(again)))
    assert _params(first) == _params(again)


def test_several_images_get_consecutive_seeds(tmp_path):
    assert main(["generate", "a star", *MODEL, "--steps", "1", "--seed", "3", "-n", "2",
                 "-o", str(tmp_path)]) == 0
    seeds = sorted(_params(p)["seed"] for p in tmp_path.glob("*.png"))
    assert seeds == [3, 4]


@pytest.mark.parametrize(("args", "message"), [
    (["--size", "100x100"], "nearest valid sizes: 96 or 112"),
    (["--size", "big"], "is not WxH"),
    (["--steps", "-3"], "--steps must be a positive integer"),
    (["-n", "0"], "-n must be a positive integer"),
    (["--init-image", "missing.png"], "init image not found"),
    (["--strength", "1.5"], "--strength must be in [0, 1]"),
])
def test_bad_input_is_one_line_and_writes_nothing(tmp_path, capsys, args, message):
    out = tmp_path / "x.png"
    assert main(["generate", "a star", *MODEL, *args, "-o", str(out)]) != 0
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_model_names_the_known_ones(tmp_path, capsys):
    assert main(["generate", "a star", "--model", "flux-nope", "-o",
                 str(tmp_path / "x.png")]) != 0
    err = capsys.readouterr().err
    assert "unknown model 'flux-nope'" in err and "flux-dev" in err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(DEFAULT_MODEL not in shipped_models(), reason="no embedded weights")
def test_without_a_model_the_embedded_default_draws(tmp_path):
    out = tmp_path / "d.png"
    assert main(["generate", "a red star above a blue circle", "--quiet", "--seed", "1",
                 "-o", str(out)]) == 0
    params = _params(out)
    assert params["model_ref"] == DEFAULT_MODEL and params["model"] == DEFAULT_MODEL
    assert Image.open(out).size == (params["width"], params["height"])


def test_generate_prints_only_its_own_progress_and_result(tmp_path):
    # A fresh process, as a user runs it: library import chatter (torchao's missing optional
    # kernels, transformers' weight-loading bar) must not reach the terminal.
    import subprocess
    import sys

    out = tmp_path / "a.png"
    run = subprocess.run([sys.executable, "-m", "fluxai.cli.main", "generate", "a red star",
                          "--steps", "1", "--quiet", "-o", str(out)],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == str(out)
    assert run.stderr.strip() == ""
