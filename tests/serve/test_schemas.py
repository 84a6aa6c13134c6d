"""Request validation and the batching/caching keys derived from accepted settings."""

from __future__ import annotations

import pytest

from fluxai.serve.config import Limits
from fluxai.serve.errors import ApiError
from fluxai.serve.jobs import Job
from fluxai.serve.queue import pick_batch
from fluxai.serve.schemas import BflRequest, GenSpec, ImageRequest, spec_from_bfl, validate

LIMITS = Limits(max_side=512, max_n=4, max_steps=50)


def refusal(**kw: object) -> ApiError:
    with pytest.raises(ApiError) as e:
        validate(**{"prompt": "p", "limits": LIMITS, **kw})  # type: ignore[arg-type]
    return e.value


def test_side_above_limit_names_the_allowed_range() -> None:
    e = refusal(width=1024)
    assert e.status == 400 and "multiple of 16 from 16 to 512" in e.message


def test_too_many_pixels_is_refused() -> None:
    e = refusal(width=512, height=512, limits=Limits(max_side=512, max_pixels=256 * 256))
    assert "at most 65536" in e.message


def test_empty_prompt_is_refused() -> None:
    assert refusal(prompt="   ").param == "prompt"


def test_seed_outside_32_bits_is_refused() -> None:
    assert refusal(seed=2**40).param == "seed"


def test_guidance_outside_range_is_refused() -> None:
    assert refusal(guidance=-1.0).param == "guidance"


def test_openai_size_string_must_be_wxh() -> None:
    from fluxai.serve.schemas import spec_from_openai

    with pytest.raises(ApiError, match="not WxH"):
        spec_from_openai(ImageRequest(prompt="p", size="big"), LIMITS)


def test_bfl_width_error_names_the_width_field() -> None:
    with pytest.raises(ApiError) as e:
        spec_from_bfl(BflRequest(prompt="p", width=100), LIMITS)
    assert e.value.param == "width"


def test_fixed_seed_gives_a_cache_key_random_seed_none() -> None:
    fixed = validate("p", LIMITS, seed=3)
    assert fixed.cache_key("m") == validate("p", LIMITS, seed=3).cache_key("m")
    assert fixed.cache_key("m") != fixed.cache_key("other-model")
    assert validate("p", LIMITS).cache_key("m") is None


def test_response_format_does_not_change_the_cache_key() -> None:
    a = validate("p", LIMITS, seed=3, response_format="url")
    b = validate("p", LIMITS, seed=3, response_format="b64_json")
    assert a.cache_key("m") == b.cache_key("m")


def test_spec_round_trips_through_its_dict() -> None:
    spec = GenSpec(prompt="p", loras=(("style", 0.5),), seed=9, seed_fixed=True)
    assert GenSpec.from_dict(spec.to_dict()) == spec


def _job(steps: int, n: int = 1) -> Job:
    return Job(id=f"j{steps}-{n}-{id(object())}", model="m",
               spec=GenSpec(prompt="p", n=n, steps=steps).to_dict())


def test_batch_takes_compatible_jobs_up_to_the_image_limit() -> None:
    first = _job(4, n=2)
    same, other, big = _job(4, n=2), _job(8), _job(4, n=4)
    last = _job(4, n=1)
    batch = pick_batch(first, [same, other, big, last], max_images=5)
    assert batch == [first, same, last]
