"""Our configs as diffusers' config.json, for folders its `from_pretrained` loads as they are."""

from __future__ import annotations

from typing import Any

from fluxai.checkpoints.errors import CheckpointError
from fluxai.config import AutoEncoderConfig, FluxConfig

_VERSION = "0.30.0"  # the first diffusers release with Flux; later ones read it unchanged


def transformer_config(cfg: FluxConfig) -> dict[str, Any]:
    # diffusers' FluxTransformer2DModel fixes these; a model that differs has no diffusers form.
    fixed = {"mlp_ratio": (cfg.mlp_ratio, 4.0), "qkv_bias": (cfg.qkv_bias, True),
             "theta": (cfg.theta, 10_000)}
    for name, (ours, theirs) in fixed.items():
        if ours != theirs:
            raise CheckpointError(f"diffusers' FluxTransformer2DModel fixes {name}={theirs}; "
                                  f"this model has {name}={ours}")
    return {
        "_class_name": "FluxTransformer2DModel",
        "_diffusers_version": _VERSION,
        "patch_size": 1,
        "in_channels": cfg.in_channels,
        "out_channels": cfg.out_channels,
        "num_layers": cfg.depth,
        "num_single_layers": cfg.depth_single_blocks,
        "attention_head_dim": cfg.head_dim,
        "num_attention_heads": cfg.num_heads,
        "joint_attention_dim": cfg.context_in_dim,
        "pooled_projection_dim": cfg.vec_in_dim,
        "guidance_embeds": cfg.guidance_embed,
        "axes_dims_rope": list(cfg.axes_dim),
    }


def autoencoder_config(cfg: AutoEncoderConfig) -> dict[str, Any]:
    if cfg.ch_mult[0] != 1:  # diffusers' first block takes block_out_channels[0], BFL's takes ch
        raise CheckpointError(f"diffusers' AutoencoderKL needs ch_mult to start at 1, "
                              f"this model has {list(cfg.ch_mult)}")
    levels = len(cfg.ch_mult)
    return {
        "_class_name": "AutoencoderKL",
        "_diffusers_version": _VERSION,
        "in_channels": cfg.in_channels,
        "out_channels": cfg.out_ch,
        "down_block_types": ["DownEncoderBlock2D"] * levels,
        "up_block_types": ["UpDecoderBlock2D"] * levels,
        "block_out_channels": [cfg.ch * m for m in cfg.ch_mult],
        "layers_per_block": cfg.num_res_blocks,
        "act_fn": "silu",
        "latent_channels": cfg.z_channels,
        "norm_num_groups": cfg.norm_groups,
        "sample_size": cfg.resolution,
        "scaling_factor": cfg.scale_factor,
        "shift_factor": cfg.shift_factor,
        "latents_mean": None,
        "latents_std": None,
        "force_upcast": True,
        "use_quant_conv": False,
        "use_post_quant_conv": False,
        "mid_block_add_attention": True,
    }
