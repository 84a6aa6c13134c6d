"""Where a LoRA can land: every linear layer of `Flux`, under every name the tools give it.

One table per model shape maps a module name, as any LoRA tool spells it (BFL dotted, kohya's
underscored BFL names, diffusers dotted or underscored, XLabs' processor names), to the BFL
linear layer it adapts and the output rows it covers. diffusers splits BFL's fused projections
(`img_attn.qkv` into `to_q`/`to_k`/`to_v`, single blocks' `linear1` into those plus `proj_mlp`),
so its names map onto row slices; its `norm_out.linear` orders (scale, shift) where BFL orders
(shift, scale), so that name maps with its halves swapped.

A LoRA may also adapt the autoencoder's decoder (`vae.decoder.<BFL name>`, LoCon-style conv
updates): a new concept can need drawing the decoder never learned. Those names are fluxai's own;
no other tool writes them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from fluxai.config import AutoEncoderConfig, FluxConfig

DECODER_PREFIX = "vae.decoder."


@dataclass(frozen=True)
class Segment:
    """Rows [src_lo, src_hi) of the source layer's output are rows [dst_lo, dst_hi) of ours."""

    src_lo: int
    src_hi: int
    dst_lo: int
    dst_hi: int


@dataclass(frozen=True)
class Target:
    module: str  # BFL name of the nn.Linear
    out_features: int  # rows of the BFL layer
    segments: tuple[Segment, ...]  # how the source name's output rows land on ours

    @property
    def rows(self) -> tuple[int, int]:
        """The BFL rows covered: always one contiguous range."""
        return min(s.dst_lo for s in self.segments), max(s.dst_hi for s in self.segments)

    @property
    def num_rows(self) -> int:
        return sum(s.src_hi - s.src_lo for s in self.segments)

    def to_ours(self, rows: Tensor) -> Tensor:
        """Reorder a tensor's rows (dim 0) from the source layer's order into BFL's order."""
        if len(self.segments) == 1:
            return rows
        ordered = sorted(self.segments, key=lambda s: s.dst_lo)
        return torch.cat([rows[s.src_lo:s.src_hi] for s in ordered])

    def to_theirs(self, rows: Tensor) -> Tensor:
        """The inverse of `to_ours`, for writing the source layout back."""
        if len(self.segments) == 1:
            return rows
        lo = self.rows[0]
        ordered = sorted(self.segments, key=lambda s: s.src_lo)
        return torch.cat([rows[s.dst_lo - lo:s.dst_hi - lo] for s in ordered])


def _whole(module: str, rows: int) -> Target:
    return Target(module, rows, (Segment(0, rows, 0, rows),))


def _slice(module: str, rows: int, lo: int, hi: int) -> Target:
    return Target(module, rows, (Segment(0, hi - lo, lo, hi),))


def underscored(name: str) -> str:
    return name.replace(".", "_")


def linear_modules(config: FluxConfig) -> dict[str, tuple[int, int]]:
    """Every nn.Linear of `Flux(config)` (BFL names) -> (in_features, out_features)."""
    h, mlp = config.hidden_size, config.mlp_hidden_dim
    out = {
        "img_in": (config.in_channels, h), "txt_in": (config.context_in_dim, h),
        "time_in.in_layer": (256, h), "time_in.out_layer": (h, h),
        "vector_in.in_layer": (config.vec_in_dim, h), "vector_in.out_layer": (h, h),
        "final_layer.linear": (h, config.out_channels),
        "final_layer.adaLN_modulation.1": (h, 2 * h),
    }
    if config.guidance_embed:
        out |= {"guidance_in.in_layer": (256, h), "guidance_in.out_layer": (h, h)}
    for i in range(config.depth):
        p = f"double_blocks.{i}."
        for s in ("img", "txt"):
            out |= {p + f"{s}_mod.lin": (h, 6 * h), p + f"{s}_attn.qkv": (h, 3 * h),
                    p + f"{s}_attn.proj": (h, h), p + f"{s}_mlp.0": (h, mlp),
                    p + f"{s}_mlp.2": (mlp, h)}
    for i in range(config.depth_single_blocks):
        p = f"single_blocks.{i}."
        out |= {p + "linear1": (h, 3 * h + mlp), p + "linear2": (h + mlp, h),
                p + "modulation.lin": (h, 3 * h)}
    return out


def diffusers_names(config: FluxConfig) -> dict[str, Target]:
    """diffusers' FluxTransformer2DModel linear names -> where they land in BFL's layout."""
    h, mlp = config.hidden_size, config.mlp_hidden_dim
    t: dict[str, Target] = {
        "x_embedder": _whole("img_in", h),
        "context_embedder": _whole("txt_in", h),
        "time_text_embed.timestep_embedder.linear_1": _whole("time_in.in_layer", h),
        "time_text_embed.timestep_embedder.linear_2": _whole("time_in.out_layer", h),
        "time_text_embed.text_embedder.linear_1": _whole("vector_in.in_layer", h),
        "time_text_embed.text_embedder.linear_2": _whole("vector_in.out_layer", h),
        "proj_out": _whole("final_layer.linear", config.out_channels),
        "norm_out.linear": Target("final_layer.adaLN_modulation.1", 2 * h,
                                  (Segment(0, h, h, 2 * h), Segment(h, 2 * h, 0, h))),
    }
    if config.guidance_embed:
        t["time_text_embed.guidance_embedder.linear_1"] = _whole("guidance_in.in_layer", h)
        t["time_text_embed.guidance_embedder.linear_2"] = _whole("guidance_in.out_layer", h)
    for i in range(config.depth):
        d, b = f"transformer_blocks.{i}.", f"double_blocks.{i}."
        t |= {
            d + "norm1.linear": _whole(b + "img_mod.lin", 6 * h),
            d + "norm1_context.linear": _whole(b + "txt_mod.lin", 6 * h),
            d + "attn.to_out.0": _whole(b + "img_attn.proj", h),
            d + "attn.to_add_out": _whole(b + "txt_attn.proj", h),
            d + "ff.net.0.proj": _whole(b + "img_mlp.0", mlp),
            d + "ff.net.2": _whole(b + "img_mlp.2", h),
            d + "ff_context.net.0.proj": _whole(b + "txt_mlp.0", mlp),
            d + "ff_context.net.2": _whole(b + "txt_mlp.2", h),
        }
        for j, (img, txt) in enumerate((("to_q", "add_q_proj"), ("to_k", "add_k_proj"),
                                        ("to_v", "add_v_proj"))):
            t[d + "attn." + img] = _slice(b + "img_attn.qkv", 3 * h, j * h, (j + 1) * h)
            t[d + "attn." + txt] = _slice(b + "txt_attn.qkv", 3 * h, j * h, (j + 1) * h)
    for i in range(config.depth_single_blocks):
        d, b = f"single_transformer_blocks.{i}.", f"single_blocks.{i}."
        rows = 3 * h + mlp
        t |= {
            d + "attn.to_q": _slice(b + "linear1", rows, 0, h),
            d + "attn.to_k": _slice(b + "linear1", rows, h, 2 * h),
            d + "attn.to_v": _slice(b + "linear1", rows, 2 * h, 3 * h),
            d + "proj_mlp": _slice(b + "linear1", rows, 3 * h, rows),
            d + "proj_out": _whole(b + "linear2", h),
            d + "norm.linear": _whole(b + "modulation.lin", 3 * h),
        }
    return t


def xlabs_names(config: FluxConfig) -> dict[str, Target]:
    """XLabs' attention-processor LoRAs: lora1 adapts the image stream, lora2 the text stream."""
    h = config.hidden_size
    t: dict[str, Target] = {}
    for i in range(config.depth):
        p, b = f"double_blocks.{i}.processor.", f"double_blocks.{i}."
        t |= {p + "qkv_lora1": _whole(b + "img_attn.qkv", 3 * h),
              p + "qkv_lora2": _whole(b + "txt_attn.qkv", 3 * h),
              p + "proj_lora1": _whole(b + "img_attn.proj", h),
              p + "proj_lora2": _whole(b + "txt_attn.proj", h)}
    for i in range(config.depth_single_blocks):
        p, b = f"single_blocks.{i}.processor.", f"single_blocks.{i}."
        t |= {p + "qkv_lora": _slice(b + "linear1", 3 * h + config.mlp_hidden_dim, 0, 3 * h),
              p + "proj_lora": _whole(b + "linear2", h)}
    return t


def decoder_convs(config: AutoEncoderConfig) -> dict[str, tuple[int, int, int]]:
    """Every Conv2d of the decoder (`vae.decoder.<name>`) -> (in, out, kernel size)."""
    from fluxai.model.autoencoder import Decoder

    with torch.device("meta"):
        decoder = Decoder(config)
    return {DECODER_PREFIX + name: (m.in_channels, m.out_channels, m.kernel_size[0])
            for name, m in decoder.named_modules() if isinstance(m, torch.nn.Conv2d)}


class TargetTable:
    """Name lookups for one model shape; built once per (config) and cheap to query. Given the
    autoencoder's config too, it knows the decoder's convolutions."""

    def __init__(self, config: FluxConfig, autoencoder: AutoEncoderConfig | None = None):
        self.config = config
        self.convs = decoder_convs(autoencoder) if autoencoder is not None else {}
        self.modules = linear_modules(config)
        self.bfl = {name: _whole(name, rows) for name, (_, rows) in self.modules.items()}
        self.diffusers = diffusers_names(config)
        self.xlabs = xlabs_names(config)
        self._underscored = {underscored(k): v for table in (self.bfl, self.diffusers)
                             for k, v in table.items()}

    def lookup(self, name: str) -> Target | None:
        """A module name in any known spelling (prefixes already removed)."""
        for table in (self.bfl, self.diffusers, self.xlabs):
            if name in table:
                return table[name]
        return self._underscored.get(name)

    def in_features(self, module: str) -> int:
        return self.modules[module][0]

    def out_features(self, module: str) -> int:
        return self.convs[module][1] if module in self.convs else self.modules[module][1]

    def diffusers_names_within(self, module: str, rows: tuple[int, int]
                               ) -> list[tuple[str, Target]]:
        """The diffusers names whose rows lie inside `rows` of a BFL module, in row order."""
        found = [(k, t) for k, t in self.diffusers.items() if t.module == module
                 and rows[0] <= t.rows[0] and t.rows[1] <= rows[1]]
        return sorted(found, key=lambda kt: kt[1].rows)
