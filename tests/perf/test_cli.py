import re

import numpy as np
import pytest
import torch
from PIL import Image

from fluxai.cli.main import main

pytest.importorskip("torchao")

BASE = ["generate", "a red star", "--model", "flux-test-dev", "--size", "64x64", "--steps",
        "2", "--seed", "1", "--device", "cpu", "--quiet"]


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    return err


def test_a_gpu_only_quantization_on_cpu_fails_in_one_line_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "x.png"
    assert main([*BASE, "--quantize", "fp8wo", "-o", str(out)]) == 1
    assert "runs on CUDA GPUs only" in one_line_error(capsys)
    assert not out.exists()


def test_an_unknown_quantization_mode_is_a_usage_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*BASE, "--quantize", "int3", "-o", str(tmp_path / "x.png")])
    assert exit_.value.code == 2
    assert "int8wo" in one_line_error(capsys)


def test_a_negative_cache_threshold_is_refused(tmp_path, capsys):
    assert main([*BASE, "--cache-threshold", "-1", "-o", str(tmp_path / "x.png")]) == 1
    assert "cache threshold must be >= 0" in one_line_error(capsys)


def test_memory_presets_do_not_change_the_image(tmp_path):
    plain, low = tmp_path / "plain.png", tmp_path / "low.png"
    assert main([*BASE, "-o", str(plain)]) == 0
    assert main([*BASE, "--memory", "low", "-o", str(low)]) == 0
    assert np.array_equal(np.array(Image.open(plain)), np.array(Image.open(low)))


def test_int8_weight_only_generation_writes_an_image(tmp_path):
    out = tmp_path / "q.png"
    assert main([*BASE, "--quantize", "int8wo", "-o", str(out)]) == 0
    assert Image.open(out).size == (64, 64)


def test_bench_refuses_a_size_the_latent_grid_cannot_hold(capsys):
    assert main(["bench", "--size", "30x30"]) == 1
    assert "not a positive multiple of 16" in one_line_error(capsys)


def test_bench_runs_both_pipelines_on_identical_weights(capsys):
    pytest.importorskip("diffusers")
    assert main(["bench", "--model", "flux-test-dev", "--size", "32x32", "--steps", "2",
                 "--repeats", "1", "--warmup", "0", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^fluxai .*ms", out, re.M) and re.search(r"^diffusers .*ms", out, re.M)
    diff = float(re.search(r"max \|ours - diffusers\| (\S+)", out).group(1))
    assert diff < 1e-3  # same weights, same seed: the same image


def test_the_api_refuses_a_bad_switch_before_loading_anything():
    from fluxai.pipeline import FluxPipeline

    with pytest.raises(ValueError, match="unknown memory preset"):
        FluxPipeline.from_pretrained("no-such-model", memory="tiny")


def test_the_api_applies_quantization_and_step_caching():
    from fluxai.pipeline import FluxPipeline

    pipe = FluxPipeline.from_pretrained("flux-test-dev", device="cpu", quantize="int8wo",
                                        cache_threshold=0.1)
    assert type(pipe.transformer.single_blocks[0].linear1.weight) is not torch.nn.Parameter
    assert pipe.transformer.step_cache.threshold == 0.1


def test_bench_gives_diffusers_the_same_classifier_free_guidance(capsys):
    pytest.importorskip("diffusers")
    from fluxai.registry import shipped_models

    if "flux-tiny" not in shipped_models():
        pytest.skip("no embedded flux-tiny weights")
    # flux-tiny samples with true CFG by default: both pipelines must run it, or the images
    # (and the timings) compare two passes a step against one.
    assert main(["bench", "--model", "flux-tiny", "--size", "32x32", "--steps", "2",
                 "--repeats", "1", "--warmup", "0", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    diff = float(re.search(r"max \|ours - diffusers\| (\S+)", out).group(1))
    assert diff < 1e-3
