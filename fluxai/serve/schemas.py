"""Request bodies (OpenAI Images API shape, FLUX extensions, BFL shape) and their validation into
one `GenSpec`, the only form a job's settings take once accepted."""

from __future__ import annotations

import hashlib
import json
import re
import secrets
from dataclasses import asdict, dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from fluxai.serve.config import Limits
from fluxai.serve.errors import invalid

MAX_SEED = 2**32 - 1


class LoraRef(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    name: str
    scale: float = 1.0


class ImageRequest(BaseModel):
    """`POST /v1/images/generations` and `POST /v1/jobs`: OpenAI's fields, then FLUX's."""

    model_config = ConfigDict(extra="forbid", strict=True)
    prompt: str
    model: str | None = None
    n: int = 1
    size: str | None = Field(None, description="WxH, multiples of 16; default: the model's")
    response_format: Literal["url", "b64_json"] = "url"
    user: str | None = None
    steps: int | None = None
    guidance: float | None = None
    seed: int | None = None
    negative_prompt: str | None = None
    loras: list[LoraRef] | None = None


class BflRequest(BaseModel):
    """`POST /v1/flux-dev` and friends, as BFL's API takes them."""

    model_config = ConfigDict(extra="forbid", strict=True)
    prompt: str
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    guidance: float | None = None
    seed: int | None = None
    negative_prompt: str | None = None
    loras: list[LoraRef] | None = None
    safety_tolerance: int | None = Field(None, description="accepted for compatibility; the "
                                         "server's own content policy applies")
    output_format: Literal["png"] = "png"
    prompt_upsampling: Literal[False] = False


@dataclass(frozen=True)
class GenSpec:
    """Accepted settings of one job; None means the served model's default."""

    prompt: str
    n: int = 1
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    guidance: float | None = None
    seed: int = 0
    seed_fixed: bool = False
    negative_prompt: str | None = None
    loras: tuple[tuple[str, float], ...] = ()
    response_format: str = "url"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GenSpec:
        d = dict(d)
        d["loras"] = tuple(tuple(x) for x in d.get("loras", ()))
        return cls(**d)

    def batch_key(self) -> tuple[Any, ...]:
        """Jobs with equal keys can share one forward pass."""
        return (self.width, self.height, self.steps, self.guidance, self.negative_prompt,
                self.loras)

    def cache_key(self, model: str) -> str | None:
        """Identical requests with a fixed seed give identical images; random seeds never hit."""
        if not self.seed_fixed:
            return None
        d = {k: v for k, v in self.to_dict().items() if k not in ("response_format", "seed_fixed")}
        return hashlib.sha256(json.dumps([model, d], sort_keys=True).encode()).hexdigest()


def parse_size(size: str) -> tuple[int, int]:
    m = re.fullmatch(r"(\d+)x(\d+)", size.strip())
    if not m:
        raise invalid(f"size {size!r} is not WxH, e.g. 512x512", "size")
    return int(m.group(1)), int(m.group(2))


def _check_side(name: str, value: int, limits: Limits, param: str) -> None:
    if value % 16 or not limits.min_side <= value <= limits.max_side:
        raise invalid(f"{name} {value} is not allowed: use a multiple of 16 from "
                      f"{limits.min_side} to {limits.max_side}", param)


def validate(prompt: str, limits: Limits, *, n: int = 1, width: int | None = None,
             height: int | None = None, steps: int | None = None, guidance: float | None = None,
             seed: int | None = None, negative_prompt: str | None = None,
             loras: list[LoraRef] | None = None, response_format: str = "url",
             lora_names: frozenset[str] = frozenset(), size_param: str = "size") -> GenSpec:
    """Range checks every field, with the allowed range in the message."""
    if not prompt.strip():
        raise invalid("prompt is empty; describe the image to generate", "prompt")
    if len(prompt) > limits.max_prompt_chars:
        raise invalid(f"prompt has {len(prompt)} characters; at most "
                      f"{limits.max_prompt_chars} are allowed", "prompt")
    if not 1 <= n <= limits.max_n:
        raise invalid(f"n {n} is not allowed: from 1 to {limits.max_n}", "n")
    if width is not None:
        _check_side("width", width, limits, size_param if size_param == "size" else "width")
    if height is not None:
        _check_side("height", height, limits, size_param if size_param == "size" else "height")
    if width is not None and height is not None and width * height > limits.max_pixels:
        raise invalid(f"{width}x{height} has {width * height} pixels; at most "
                      f"{limits.max_pixels} are allowed", size_param)
    if steps is not None and not 1 <= steps <= limits.max_steps:
        raise invalid(f"steps {steps} is not allowed: from 1 to {limits.max_steps}", "steps")
    if guidance is not None and not 0.0 <= guidance <= limits.max_guidance:
        raise invalid(f"guidance {guidance} is not allowed: from 0 to {limits.max_guidance}",
                      "guidance")
    if seed is not None and not 0 <= seed <= MAX_SEED:
        raise invalid(f"seed {seed} is not allowed: from 0 to {MAX_SEED}", "seed")
    if negative_prompt is not None and len(negative_prompt) > limits.max_prompt_chars:
        raise invalid(f"negative_prompt is longer than {limits.max_prompt_chars} characters",
                      "negative_prompt")
    lora_pairs: tuple[tuple[str, float], ...] = ()
    if loras:
        if not lora_names:
            raise invalid("this server has no LoRAs to apply; remove the loras field",
                          "loras", "lora_not_supported")
        for ref in loras:
            if ref.name not in lora_names:
                raise invalid(f"unknown LoRA {ref.name!r}; available: "
                              f"{', '.join(sorted(lora_names))}", "loras")
            if not -4.0 <= ref.scale <= 4.0:
                raise invalid(f"LoRA scale {ref.scale} is not allowed: from -4 to 4", "loras")
        lora_pairs = tuple((r.name, r.scale) for r in loras)
    return GenSpec(
        prompt=prompt, n=n, width=width, height=height, steps=steps, guidance=guidance,
        seed=secrets.randbelow(2**31) if seed is None else seed, seed_fixed=seed is not None,
        negative_prompt=negative_prompt or None, loras=lora_pairs,
        response_format=response_format,
    )


def spec_from_openai(req: ImageRequest, limits: Limits,
                     lora_names: frozenset[str] = frozenset()) -> GenSpec:
    width = height = None
    if req.size is not None:
        width, height = parse_size(req.size)
    return validate(req.prompt, limits, n=req.n, width=width, height=height, steps=req.steps,
                    guidance=req.guidance, seed=req.seed, negative_prompt=req.negative_prompt,
                    loras=req.loras, response_format=req.response_format, lora_names=lora_names)


def spec_from_bfl(req: BflRequest, limits: Limits,
                  lora_names: frozenset[str] = frozenset()) -> GenSpec:
    if req.safety_tolerance is not None and not 0 <= req.safety_tolerance <= 6:
        raise invalid(f"safety_tolerance {req.safety_tolerance} is not allowed: from 0 to 6",
                      "safety_tolerance")
    return validate(req.prompt, limits, width=req.width, height=req.height, steps=req.steps,
                    guidance=req.guidance, seed=req.seed, negative_prompt=req.negative_prompt,
                    loras=req.loras, lora_names=lora_names, size_param="width")
