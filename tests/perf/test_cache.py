import pytest
import torch

from fluxai.perf.cache import StepCache, enable_step_cache
from fluxai.pipeline import FluxPipeline
from fluxai.registry import random_preset


@pytest.fixture()
def pipe() -> FluxPipeline:
    p = FluxPipeline(**random_preset("flux-test-dev"))
    p.set_progress_bar_config(disable=True)
    return p


def latents(pipe, steps=8):
    return pipe("a red star", seed=3, width=64, height=64, num_inference_steps=steps,
                output_type="latent").images


def test_a_threshold_of_zero_leaves_no_cache_attached(pipe):
    assert enable_step_cache(pipe.transformer, 0.0) is None
    assert pipe.transformer.step_cache is None


def test_a_cache_that_never_hits_gives_exactly_the_uncached_result(pipe):
    expected = latents(pipe)
    cache = enable_step_cache(pipe.transformer, 1e-12)
    got = latents(pipe)
    assert cache.skipped == 0 and cache.computed == 8
    assert torch.equal(got, expected)


def test_a_generous_threshold_skips_steps_and_stays_close(pipe):
    expected = latents(pipe)
    cache = enable_step_cache(pipe.transformer, 10.0)
    got = latents(pipe)
    assert cache.computed == 1 and cache.skipped == 7  # only the first step is ever computed
    assert not torch.equal(got, expected)
    assert torch.isfinite(got).all()


def test_each_run_starts_fresh(pipe):
    enable_step_cache(pipe.transformer, 0.3)
    first = latents(pipe)
    second = latents(pipe)
    assert torch.equal(first, second)


def test_negative_threshold_is_refused():
    with pytest.raises(ValueError, match="threshold must be >= 0"):
        StepCache(-0.1)
