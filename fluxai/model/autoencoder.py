"""The FLUX.1 KL autoencoder in BFL's layout (`encoder.*`, `decoder.*`).

`encode` returns latents already scaled and shifted into the space the transformer works in;
`decode` undoes that before running the decoder.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fluxai.config import AutoEncoderConfig


def swish(x: Tensor) -> Tensor:
    return x * torch.sigmoid(x)


def _norm(channels: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=groups, num_channels=channels, eps=1e-6, affine=True)


class AttnBlock(nn.Module):
    def __init__(self, in_channels: int, groups: int):
        super().__init__()
        self.norm = _norm(in_channels, groups)
        self.q = nn.Conv2d(in_channels, in_channels, kernel_size=1)
        self.k = nn.Conv2d(in_channels, in_channels, kernel_size=1)
        self.v = nn.Conv2d(in_channels, in_channels, kernel_size=1)
        self.proj_out = nn.Conv2d(in_channels, in_channels, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.norm(x)
        b, c, height, width = h.shape
        # One head over all spatial positions: (B, 1, HW, C).
        q, k, v = (m(h).flatten(2).transpose(1, 2)[:, None] for m in (self.q, self.k, self.v))
        h = F.scaled_dot_product_attention(q, k, v)
        h = h[:, 0].transpose(1, 2).reshape(b, c, height, width)
        return x + self.proj_out(h)


class ResnetBlock(nn.Module):
    def __init__(self, in_channels: int, out_channels: int, groups: int):
        super().__init__()
        self.norm1 = _norm(in_channels, groups)
        self.conv1 = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1)
        self.norm2 = _norm(out_channels, groups)
        self.conv2 = nn.Conv2d(out_channels, out_channels, kernel_size=3, stride=1, padding=1)
        if in_channels != out_channels:
            self.nin_shortcut = nn.Conv2d(in_channels, out_channels, kernel_size=1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(swish(self.norm1(x)))
        h = self.conv2(swish(self.norm2(h)))
        if hasattr(self, "nin_shortcut"):
            x = self.nin_shortcut(x)
        return x + h


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=2, padding=0)

    def forward(self, x: Tensor) -> Tensor:
        # Asymmetric padding keeps the reference's pixel alignment.
        return self.conv(F.pad(x, (0, 1, 0, 1), mode="constant", value=0))


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=1, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


def _mid(channels: int, groups: int) -> nn.Module:
    mid = nn.Module()
    mid.block_1 = ResnetBlock(channels, channels, groups)
    mid.attn_1 = AttnBlock(channels, groups)
    mid.block_2 = ResnetBlock(channels, channels, groups)
    return mid


def _run_mid(mid: nn.Module, h: Tensor) -> Tensor:
    return mid.block_2(mid.attn_1(mid.block_1(h)))


class Encoder(nn.Module):
    def __init__(self, cfg: AutoEncoderConfig):
        super().__init__()
        self.conv_in = nn.Conv2d(cfg.in_channels, cfg.ch, kernel_size=3, stride=1, padding=1)
        in_ch_mult = (1, *cfg.ch_mult)
        self.down = nn.ModuleList()
        block_in = cfg.ch
        for level, mult in enumerate(cfg.ch_mult):
            block_in = cfg.ch * in_ch_mult[level]
            block_out = cfg.ch * mult
            stage = nn.Module()
            stage.block = nn.ModuleList()
            stage.attn = nn.ModuleList()  # empty in FLUX; kept for the key layout
            for _ in range(cfg.num_res_blocks):
                stage.block.append(ResnetBlock(block_in, block_out, cfg.norm_groups))
                block_in = block_out
            if level != len(cfg.ch_mult) - 1:
                stage.downsample = Downsample(block_in)
            self.down.append(stage)
        self.mid = _mid(block_in, cfg.norm_groups)
        self.norm_out = _norm(block_in, cfg.norm_groups)
        self.conv_out = nn.Conv2d(block_in, 2 * cfg.z_channels, kernel_size=3, stride=1, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv_in(x)
        for stage in self.down:
            for block in stage.block:
                h = block(h)
            if hasattr(stage, "downsample"):
                h = stage.downsample(h)
        h = _run_mid(self.mid, h)
        return self.conv_out(swish(self.norm_out(h)))


class Decoder(nn.Module):
    def __init__(self, cfg: AutoEncoderConfig):
        super().__init__()
        block_in = cfg.ch * cfg.ch_mult[-1]
        self.conv_in = nn.Conv2d(cfg.z_channels, block_in, kernel_size=3, stride=1, padding=1)
        self.mid = _mid(block_in, cfg.norm_groups)
        stages: list[nn.Module] = []
        for level in reversed(range(len(cfg.ch_mult))):
            block_out = cfg.ch * cfg.ch_mult[level]
            stage = nn.Module()
            stage.block = nn.ModuleList()
            stage.attn = nn.ModuleList()
            for _ in range(cfg.num_res_blocks + 1):
                stage.block.append(ResnetBlock(block_in, block_out, cfg.norm_groups))
                block_in = block_out
            if level != 0:
                stage.upsample = Upsample(block_in)
            stages.insert(0, stage)  # index by level, so keys read up.0 = full resolution
        self.up = nn.ModuleList(stages)
        self.norm_out = _norm(block_in, cfg.norm_groups)
        self.conv_out = nn.Conv2d(block_in, cfg.out_ch, kernel_size=3, stride=1, padding=1)

    def forward(self, z: Tensor) -> Tensor:
        h = _run_mid(self.mid, self.conv_in(z))
        h = h.to(self.conv_out.weight.dtype)
        for stage in reversed(self.up):
            for block in stage.block:
                h = block(h)
            if hasattr(stage, "upsample"):
                h = stage.upsample(h)
        return self.conv_out(swish(self.norm_out(h)))


class AutoEncoder(nn.Module):
    def __init__(self, config: AutoEncoderConfig):
        super().__init__()
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = Decoder(config)

    def encode_moments(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior mean and log-variance of the unscaled latent for images in [-1, 1]."""
        mean, logvar = self.encoder(x).chunk(2, dim=1)
        return mean, logvar

    def encode(self, x: Tensor, generator: torch.Generator | None = None, sample: bool = False
               ) -> Tensor:
        """Images in [-1, 1] -> scaled, shifted latents (the posterior mean unless `sample`)."""
        mean, logvar = self.encode_moments(x)
        z = mean
        if sample:
            noise = torch.randn(mean.shape, generator=generator, dtype=mean.dtype,
                                device=generator.device if generator else mean.device)
            z = mean + torch.exp(0.5 * logvar) * noise.to(mean.device)
        return self.config.scale_factor * (z - self.config.shift_factor)

    def decode(self, z: Tensor) -> Tensor:
        """Scaled latents -> images in (about) [-1, 1]."""
        z = z / self.config.scale_factor + self.config.shift_factor
        if z.device.type == "cpu":
            # oneDNN runs CPU convolutions about twice as fast on channels-last activations
            # (same maths, another summation order: differences ~1e-6 relative).
            z = z.contiguous(memory_format=torch.channels_last)
        return self.decoder(z)

    def forward(self, x: Tensor) -> Tensor:
        return self.decode(self.encode(x))
