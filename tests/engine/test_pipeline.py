import numpy as np
import pytest
import torch
from PIL import Image

from fluxai.pipeline import FluxPipeline
from fluxai.registry import random_preset


@pytest.fixture(scope="module")
def pipe() -> FluxPipeline:
    p = FluxPipeline(**random_preset("flux-test-dev"))
    p.set_progress_bar_config(disable=True)
    return p


def run(pipe, prompt="a red star", **kw):
    kw.setdefault("num_inference_steps", 2)
    kw.setdefault("width", 32)
    kw.setdefault("height", 32)
    return pipe(prompt, **kw)


def test_same_seed_gives_the_same_image(pipe):
    a = run(pipe, seed=7, output_type="np").images
    b = run(pipe, seed=7, output_type="np").images
    assert np.array_equal(a, b)


def test_different_seeds_give_different_images(pipe):
    a = run(pipe, seed=7, output_type="np").images
    b = run(pipe, seed=8, output_type="np").images
    assert not np.array_equal(a, b)


def test_batched_prompts_times_images_per_prompt_gives_every_image(pipe):
    out = run(pipe, ["a", "b"], num_images_per_prompt=3, seed=1)
    assert len(out.images) == 6
    assert [p["prompt"] for p in out.parameters] == ["a"] * 3 + ["b"] * 3


def test_an_image_from_a_generator_list_can_be_made_alone(pipe):
    gens = [torch.Generator().manual_seed(s) for s in (10, 11)]
    both = run(pipe, num_images_per_prompt=2, generator=gens, output_type="pt").images
    alone = run(pipe, generator=torch.Generator().manual_seed(11), output_type="pt").images
    assert torch.allclose(both[1:], alone, atol=1e-5)


def test_output_types(pipe):
    assert isinstance(run(pipe, seed=0).images[0], Image.Image)
    assert run(pipe, seed=0, output_type="np").images.shape == (1, 32, 32, 3)
    assert run(pipe, seed=0, output_type="pt").images.shape == (1, 3, 32, 32)
    assert run(pipe, seed=0, output_type="latent").images.shape == (1, 4, 64)


def test_callback_sees_every_step_and_can_replace_latents(pipe):
    seen = []

    def callback(p, i, t, kwargs):
        seen.append((i, t))
        return {"latents": torch.zeros_like(kwargs["latents"])}

    out = run(pipe, seed=0, num_inference_steps=3, callback_on_step_end=callback,
              output_type="latent")
    assert [i for i, _ in seen] == [0, 1, 2]
    assert out.images.abs().sum() == 0


def test_true_cfg_with_a_negative_prompt_changes_the_image(pipe):
    plain = run(pipe, seed=0, output_type="np").images
    cfg = run(pipe, seed=0, negative_prompt="blurry", true_cfg_scale=4.0,
              output_type="np").images
    assert not np.allclose(plain, cfg)


def test_img2img_at_full_strength_equals_text_to_image(pipe):
    init = Image.new("RGB", (32, 32), (200, 30, 30))
    a = run(pipe, seed=3, image=init, strength=1.0, output_type="np").images
    b = run(pipe, seed=3, output_type="np").images
    assert np.allclose(a, b, atol=1e-6)


def test_img2img_at_low_strength_stays_near_the_init_image(pipe):
    init = Image.new("RGB", (32, 32), (200, 30, 30))
    low = run(pipe, seed=3, image=init, strength=0.5, num_inference_steps=4,
              output_type="latent").images
    high = run(pipe, seed=3, num_inference_steps=4, output_type="latent").images
    encoded = pipe.vae.encode(torch.from_numpy(np.asarray(init)).permute(2, 0, 1)[None]
                              .float() / 127.5 - 1)
    from fluxai.sampling import pack

    target = pack(encoded)
    assert (low - target).abs().mean() < (high - target).abs().mean()


def test_size_that_is_not_a_multiple_of_16_is_refused(pipe):
    with pytest.raises(ValueError, match="multiple of 16"):
        run(pipe, width=40)


def test_zero_steps_are_refused(pipe):
    with pytest.raises(ValueError, match="at least 1"):
        run(pipe, num_inference_steps=0)


def test_prompt_embeds_replace_the_prompt(pipe):
    ctx, pooled = pipe.encode_prompt(["a red star"])
    a = run(pipe, seed=2, output_type="np").images
    b = pipe(prompt_embeds=ctx, pooled_prompt_embeds=pooled, seed=2, width=32, height=32,
             num_inference_steps=2, output_type="np").images
    assert np.array_equal(a, b)
