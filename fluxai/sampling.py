"""Rectified-flow sampling: latent packing, position ids, noise, the time schedule, Euler steps.

Conventions (shared with BFL and diffusers): t = 1 is pure noise, t = 0 is data, the model
predicts the velocity v = noise - data, and an Euler step is x += (t_next - t) * v.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from fluxai.model.transformer import Flux

PATCH = 2  # latents are packed into 2x2 patches, one token each


def check_size(width: int, height: int, multiple: int = 16) -> None:
    """Refuse sizes the latent grid cannot represent, naming the nearest valid ones."""
    bad = [(n, v) for n, v in (("width", width), ("height", height)) if v % multiple or v <= 0]
    if bad:
        name, value = bad[0]
        lower = max(multiple, value // multiple * multiple)
        upper = lower + multiple if lower < value or value <= 0 else lower
        raise ValueError(
            f"{name} {value} is not a positive multiple of {multiple}; "
            f"nearest valid sizes: {lower} or {upper}"
        )


def latent_shape(batch: int, channels: int, height: int, width: int, downscale: int
                 ) -> tuple[int, int, int, int]:
    step = downscale * PATCH
    return batch, channels, PATCH * (height // step), PATCH * (width // step)


def make_noise(shape: tuple[int, ...], generator: torch.Generator | list[torch.Generator] | None,
               dtype: torch.dtype, device: torch.device | str) -> Tensor:
    """Noise drawn on the generator's device (CPU for a CPU generator), as diffusers draws it.

    Drawing on the CPU and moving makes a seed give the same image on every device class.
    """
    if isinstance(generator, list):
        return torch.cat(
            [make_noise((1, *shape[1:]), g, dtype, device) for g in generator], dim=0
        )
    rand_device = generator.device if generator is not None else torch.device("cpu")
    noise = torch.randn(shape, generator=generator, device=rand_device, dtype=dtype)
    return noise.to(device)


def pack(latents: Tensor) -> Tensor:
    """(B, C, H, W) -> (B, H/2 * W/2, C*4): each 2x2 patch becomes one token."""
    b, c, h, w = latents.shape
    x = latents.view(b, c, h // PATCH, PATCH, w // PATCH, PATCH)
    return x.permute(0, 2, 4, 1, 3, 5).reshape(b, (h // PATCH) * (w // PATCH), c * PATCH * PATCH)


def unpack(tokens: Tensor, latent_height: int, latent_width: int) -> Tensor:
    b, _, d = tokens.shape
    c = d // (PATCH * PATCH)
    h, w = latent_height // PATCH, latent_width // PATCH
    x = tokens.view(b, h, w, c, PATCH, PATCH)
    return x.permute(0, 3, 1, 4, 2, 5).reshape(b, c, latent_height, latent_width)


def image_ids(latent_height: int, latent_width: int, batch: int, device: torch.device | str
              ) -> Tensor:
    """Position ids (B, tokens, 3): axis 0 unused for images, then row and column."""
    h, w = latent_height // PATCH, latent_width // PATCH
    ids = torch.zeros(h, w, 3)
    ids[..., 1] = torch.arange(h)[:, None]
    ids[..., 2] = torch.arange(w)[None, :]
    return ids.reshape(1, h * w, 3).expand(batch, -1, -1).to(device)


def text_ids(batch: int, length: int, device: torch.device | str) -> Tensor:
    return torch.zeros(batch, length, 3, device=device)


def time_shift_mu(image_seq_len: int, base_shift: float = 0.5, max_shift: float = 1.15,
                  base_seq_len: int = 256, max_seq_len: int = 4096) -> float:
    """mu grows linearly with the token count: larger images spend more steps at high noise."""
    slope = (max_shift - base_shift) / (max_seq_len - base_seq_len)
    return image_seq_len * slope + (base_shift - slope * base_seq_len)


def schedule(num_steps: int, image_seq_len: int, shift: bool) -> list[float]:
    """num_steps + 1 noise levels from 1 to 0 (float32 values, as diffusers' scheduler keeps)."""
    if num_steps < 1:
        raise ValueError(f"num_inference_steps must be at least 1, got {num_steps}")
    sigmas = np.linspace(1.0, 1.0 / num_steps, num_steps).astype(np.float32)
    if shift:
        mu = time_shift_mu(image_seq_len)
        sigmas = (math.exp(mu) / (math.exp(mu) + (1.0 / sigmas - 1.0))).astype(np.float32)
    return [*sigmas.tolist(), 0.0]


def img2img_start(sigmas: list[float], strength: float) -> int:
    """Index of the first step kept when starting from an image at the given strength."""
    if not 0.0 <= strength <= 1.0:
        raise ValueError(f"strength must be in [0, 1], got {strength}")
    steps = len(sigmas) - 1
    return int(max(steps - min(steps * strength, steps), 0))


@dataclass
class Conditioning:
    """Everything the velocity model needs besides the latents and the time."""

    txt: Tensor
    txt_ids: Tensor
    y: Tensor
    img_ids: Tensor
    guidance: Tensor | None = None


StepCallback = Callable[[int, float, Tensor], Tensor | None]


@torch.no_grad()
def denoise(
    model: Flux,
    img: Tensor,
    cond: Conditioning,
    sigmas: list[float],
    negative: Conditioning | None = None,
    true_cfg_scale: float = 1.0,
    callback: StepCallback | None = None,
) -> Tensor:
    """Euler integration of the flow ODE over the given noise levels."""
    batch = img.shape[0]
    step_cache = getattr(model, "step_cache", None)
    if step_cache is not None:
        step_cache.reset()  # a cache must never carry block outputs from another run
    use_cfg = negative is not None and true_cfg_scale != 1.0
    if use_cfg:
        # One forward pass over [conditional; negative] is cheaper than two.
        both = Conditioning(*(torch.cat([a, b]) if a is not None else None
                              for a, b in zip(vars(cond).values(), vars(negative).values(),
                                              strict=True)))
    for i, (t, t_next) in enumerate(itertools.pairwise(sigmas)):
        # diffusers hands the model (sigma * 1000) / 1000 in the latents' dtype; so do we.
        t_vec = torch.full((batch,), t * 1000.0, dtype=torch.float32, device=img.device)
        t_vec = t_vec.to(img.dtype) / 1000.0
        if use_cfg:
            v_both = model(torch.cat([img, img]), both.img_ids, both.txt, both.txt_ids,
                           torch.cat([t_vec, t_vec]), both.y, both.guidance)
            v, v_neg = v_both.chunk(2)
            v = v_neg + true_cfg_scale * (v - v_neg)
        else:
            v = model(img, cond.img_ids, cond.txt, cond.txt_ids, t_vec, cond.y, cond.guidance)
        img = (img.float() + (t_next - t) * v.float()).to(img.dtype)
        if callback is not None:
            replaced = callback(i, t_next, img)
            img = img if replaced is None else replaced
    return img
