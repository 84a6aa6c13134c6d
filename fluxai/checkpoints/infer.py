"""Model configurations read off the weights' shapes (BFL names).

Everything structural is in the shapes: widths, depths, heads (hidden size over the QK-norm
size), guidance or not. Two things are not: how the head splits into RoPE axes and RoPE's theta.
Those come from the file's own record (our metadata, diffusers' config.json) or, failing that,
from FLUX.1's values when the head size is FLUX.1's.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from fluxai.checkpoints.errors import CheckpointError
from fluxai.config import AutoEncoderConfig, FluxConfig

Shapes = Mapping[str, tuple[int, ...]]
FLUX_AXES = {128: (16, 56, 56)}  # head size -> FLUX.1's RoPE axes
CONFIG_KEY = "fluxai_config"  # safetensors metadata entry holding our config as JSON


def _need(shapes: Shapes, key: str) -> tuple[int, ...]:
    if key not in shapes:
        raise CheckpointError(f"missing tensor {key}")
    return shapes[key]


def _count(shapes: Shapes, prefix: str) -> int:
    rx = re.compile(re.escape(prefix) + r"(\d+)\.")
    found = {int(m.group(1)) for k in shapes if (m := rx.match(k))}
    return max(found) + 1 if found else 0


def stored_config(metadata: Mapping[str, str]) -> dict[str, Any]:
    try:
        return json.loads(metadata[CONFIG_KEY]) if CONFIG_KEY in metadata else {}
    except json.JSONDecodeError:
        raise CheckpointError(f"metadata {CONFIG_KEY} is not valid JSON") from None


def infer_flux_config(shapes: Shapes, stored: Mapping[str, Any] | None = None) -> FluxConfig:
    """The transformer config these shapes imply; `stored` supplies RoPE axes and theta."""
    stored = dict(stored or {})
    hidden, in_channels = _need(shapes, "img_in.weight")
    depth = _count(shapes, "double_blocks.")
    depth_single = _count(shapes, "single_blocks.")
    if depth:
        head_dim = _need(shapes, "double_blocks.0.img_attn.norm.query_norm.scale")[0]
        mlp_hidden = _need(shapes, "double_blocks.0.img_mlp.0.weight")[0]
        qkv_bias = "double_blocks.0.img_attn.qkv.bias" in shapes
    elif depth_single:
        head_dim = _need(shapes, "single_blocks.0.norm.query_norm.scale")[0]
        mlp_hidden = _need(shapes, "single_blocks.0.linear1.weight")[0] - 3 * hidden
        qkv_bias = bool(stored.get("qkv_bias", True))
    else:
        raise CheckpointError("missing tensor double_blocks.0.img_attn.qkv.weight (no blocks)")
    if head_dim == 0 or hidden % head_dim:
        raise CheckpointError(f"QK-norm size {head_dim} does not divide the width {hidden}")
    axes = stored.get("axes_dim") or FLUX_AXES.get(head_dim)
    if axes is None:
        raise CheckpointError(f"head size {head_dim} is not FLUX.1's 128 and the file does not "
                              "record its RoPE axes (pass config= to the loader)")
    try:
        return FluxConfig(
            in_channels=in_channels,
            out_channels=_need(shapes, "final_layer.linear.weight")[0],
            vec_in_dim=_need(shapes, "vector_in.in_layer.weight")[1],
            context_in_dim=_need(shapes, "txt_in.weight")[1],
            hidden_size=hidden,
            mlp_ratio=mlp_hidden / hidden,
            num_heads=hidden // head_dim,
            depth=depth,
            depth_single_blocks=depth_single,
            axes_dim=tuple(axes),
            theta=int(stored.get("theta", 10_000)),
            qkv_bias=qkv_bias,
            guidance_embed="guidance_in.in_layer.weight" in shapes,
        )
    except ValueError as e:
        raise CheckpointError(str(e)) from None


def infer_autoencoder_config(shapes: Shapes, stored: Mapping[str, Any] | None = None
                             ) -> AutoEncoderConfig:
    """The autoencoder config these shapes imply; `stored` supplies what shapes cannot tell
    (scale, shift, resolution, norm groups)."""
    stored = dict(stored or {})
    ch, in_channels = _need(shapes, "encoder.conv_in.weight")[:2]
    levels = _count(shapes, "encoder.down.")
    if levels == 0:
        raise CheckpointError("missing tensor encoder.down.0.block.0.conv1.weight")
    ch_mult = []
    for level in range(levels):
        out = _need(shapes, f"encoder.down.{level}.block.0.conv1.weight")[0]
        if out % ch:
            raise CheckpointError(f"encoder.down.{level} width {out} is not a multiple of {ch}")
        ch_mult.append(out // ch)
    defaults = AutoEncoderConfig()
    return AutoEncoderConfig(
        resolution=int(stored.get("resolution", defaults.resolution)),
        in_channels=in_channels,
        ch=ch,
        out_ch=_need(shapes, "decoder.conv_out.weight")[0],
        ch_mult=tuple(ch_mult),
        num_res_blocks=_count(shapes, "encoder.down.0.block."),
        z_channels=_need(shapes, "encoder.conv_out.weight")[0] // 2,
        scale_factor=float(stored.get("scale_factor", defaults.scale_factor)),
        shift_factor=float(stored.get("shift_factor", defaults.shift_factor)),
        norm_groups=int(stored.get("norm_groups", defaults.norm_groups)),
    )


def hints_from_diffusers(kind: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """The parts of a diffusers config.json that the shapes cannot tell."""
    if kind == "transformer":
        return {"axes_dim": config.get("axes_dims_rope")} if config.get("axes_dims_rope") else {}
    hints: dict[str, Any] = {}
    if config.get("scaling_factor") is not None:
        hints["scale_factor"] = config["scaling_factor"]
    hints["shift_factor"] = config.get("shift_factor") or 0.0
    if config.get("sample_size"):
        hints["resolution"] = config["sample_size"]
    if config.get("norm_num_groups"):
        hints["norm_groups"] = config["norm_num_groups"]
    return hints
