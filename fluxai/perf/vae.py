"""Decoding large images in less memory: VAE slicing (same maths) and tiling (approximate).

Slicing decodes a batch one image at a time: same maths (round-off aside: kernels may block a
batch of one differently), peak memory of one image. Tiling
decodes overlapping latent tiles and blends them with linear ramps across the overlap: peak
memory of one tile at any image size, at the price of small differences near tile seams
(GroupNorm sees each tile's statistics rather than the whole image's).
"""

from __future__ import annotations

import types

import torch
from torch import Tensor

from fluxai.model.autoencoder import AutoEncoder


def _plain_decode(vae: AutoEncoder, z: Tensor) -> Tensor:
    return type(vae.decoder).forward(vae.decoder, z)


def _starts(size: int, tile: int, stride: int) -> list[int]:
    if size <= tile:
        return [0]
    return sorted({*range(0, size - tile, stride), size - tile})


def _ramp(length: int, overlap: int, fade_in: bool, fade_out: bool) -> Tensor:
    w = torch.ones(length)
    if overlap > 0:
        ramp = (torch.arange(overlap, dtype=torch.float32) + 0.5) / overlap
        if fade_in:
            w[:overlap] = ramp
        if fade_out:
            w[-overlap:] = ramp.flip(0)
    return w


def decode_tiled(vae: AutoEncoder, z: Tensor, tile: int = 64, overlap: int = 16) -> Tensor:
    """Decoder output for unscaled latents `z`, computed tile by tile (sizes in latent pixels)."""
    if overlap >= tile:
        raise ValueError(f"tile overlap {overlap} must be smaller than the tile {tile}")
    _, _, h, w = z.shape
    if h <= tile and w <= tile:
        return _plain_decode(vae, z)
    up = vae.config.downscale
    ys, xs = _starts(h, tile, tile - overlap), _starts(w, tile, tile - overlap)
    out = weight = None
    for y in ys:
        for x in xs:
            part = _plain_decode(vae, z[:, :, y : y + tile, x : x + tile])
            th, tw = part.shape[-2:]
            wy = _ramp(th, overlap * up, y > 0, y + tile < h)
            wx = _ramp(tw, overlap * up, x > 0, x + tile < w)
            mask = (wy[:, None] * wx[None, :]).to(part.device, part.dtype)
            if out is None:
                out = part.new_zeros(*part.shape[:2], h * up, w * up)
                weight = part.new_zeros(h * up, w * up)
            out[..., y * up : y * up + th, x * up : x * up + tw] += part * mask
            weight[y * up : y * up + th, x * up : x * up + tw] += mask
    return out / weight


def enable_vae_slicing(vae: AutoEncoder) -> None:
    """Decode batches one image at a time."""
    inner = vae.decoder.forward

    def sliced(z: Tensor) -> Tensor:
        return torch.cat([inner(z[i : i + 1]) for i in range(z.shape[0])])

    vae.decoder.forward = sliced


def enable_vae_tiling(vae: AutoEncoder, tile: int = 64, overlap: int = 16) -> None:
    """Decode in overlapping latent tiles of `tile` latent pixels (512 image pixels by default)."""
    vae.decoder.forward = types.MethodType(
        lambda _self, z: decode_tiled(vae, z, tile, overlap), vae.decoder)


def disable_vae_tricks(vae: AutoEncoder) -> None:
    vae.decoder.__dict__.pop("forward", None)
