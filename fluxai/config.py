"""Model configurations: the transformer and the autoencoder, with named presets.

The field names follow BFL's `FluxParams` / `AutoEncoderParams`, so a config reads the same as
the reference's and maps one-to-one onto checkpoint shapes (see `checkpoints/infer.py`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any


@dataclass(frozen=True)
class FluxConfig:
    in_channels: int = 64
    out_channels: int = 64
    vec_in_dim: int = 768
    context_in_dim: int = 4096
    hidden_size: int = 3072
    mlp_ratio: float = 4.0
    num_heads: int = 24
    depth: int = 19
    depth_single_blocks: int = 38
    axes_dim: tuple[int, ...] = (16, 56, 56)
    theta: int = 10_000
    qkv_bias: bool = True
    guidance_embed: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "axes_dim", tuple(self.axes_dim))
        if self.hidden_size % self.num_heads:
            raise ValueError(
                f"hidden_size {self.hidden_size} is not divisible by num_heads {self.num_heads}"
            )
        if sum(self.axes_dim) != self.head_dim:
            raise ValueError(
                f"axes_dim {self.axes_dim} must sum to the head dim {self.head_dim}"
            )

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_heads

    @property
    def mlp_hidden_dim(self) -> int:
        return int(self.hidden_size * self.mlp_ratio)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["axes_dim"] = list(self.axes_dim)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FluxConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass(frozen=True)
class AutoEncoderConfig:
    resolution: int = 256
    in_channels: int = 3
    ch: int = 128
    out_ch: int = 3
    ch_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    z_channels: int = 16
    scale_factor: float = 0.3611
    shift_factor: float = 0.1159
    # GroupNorm groups (diffusers' norm_num_groups). FLUX.1 uses 32; a narrow autoencoder of a
    # flat-colour world needs fewer: with one channel per group a flat patch normalises to zero
    # and its colour is lost.
    norm_groups: int = 32

    def __post_init__(self) -> None:
        object.__setattr__(self, "ch_mult", tuple(self.ch_mult))
        widths = sorted({self.ch * m for m in self.ch_mult})
        if any(w % self.norm_groups for w in widths):
            raise ValueError(f"norm_groups {self.norm_groups} must divide every autoencoder "
                             f"width; this config has widths {widths}")

    @property
    def downscale(self) -> int:
        return 2 ** (len(self.ch_mult) - 1)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ch_mult"] = list(self.ch_mult)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AutoEncoderConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


@dataclass(frozen=True)
class SamplingDefaults:
    """What a model is best run with when the user names nothing."""

    width: int = 1024
    height: int = 1024
    num_inference_steps: int = 28
    guidance_scale: float = 3.5
    true_cfg_scale: float = 1.0
    shift: bool = True  # resolution-dependent time shift (dev: yes, schnell: no)
    max_sequence_length: int = 512
    negative_prompt: str = ""  # used when true_cfg_scale > 1 and none is given


@dataclass(frozen=True)
class ModelPreset:
    name: str
    transformer: FluxConfig
    autoencoder: AutoEncoderConfig = field(default_factory=AutoEncoderConfig)
    sampling: SamplingDefaults = field(default_factory=SamplingDefaults)
    text_encoder: str = "t5-clip"  # or "minilm"
    hub_id: str | None = None


_DEV = FluxConfig()
_SCHNELL = replace(_DEV, guidance_embed=False)

PRESETS: dict[str, ModelPreset] = {
    "flux-dev": ModelPreset(
        "flux-dev", _DEV, hub_id="black-forest-labs/FLUX.1-dev"
    ),
    "flux-schnell": ModelPreset(
        "flux-schnell",
        _SCHNELL,
        sampling=SamplingDefaults(
            num_inference_steps=4, guidance_scale=0.0, shift=False, max_sequence_length=256
        ),
        hub_id="black-forest-labs/FLUX.1-schnell",
    ),
    # Small random-weight configs for tests and for quick experiments.
    "flux-test-dev": ModelPreset(
        "flux-test-dev",
        FluxConfig(
            in_channels=64, out_channels=64, vec_in_dim=32, context_in_dim=48, hidden_size=64,
            num_heads=4, depth=2, depth_single_blocks=2, axes_dim=(4, 6, 6),
        ),
        AutoEncoderConfig(ch=32, ch_mult=(1, 2, 2, 2), num_res_blocks=1, z_channels=16),
        SamplingDefaults(width=64, height=64, num_inference_steps=4),
        text_encoder="random",
    ),
    # Mid-size random-weight config for CPU benchmarks (fluxai bench): big enough that the
    # matmuls, not Python, dominate a step; ~60M transformer parameters.
    "flux-mid": ModelPreset(
        "flux-mid",
        FluxConfig(
            in_channels=64, out_channels=64, vec_in_dim=256, context_in_dim=512,
            hidden_size=512, num_heads=8, depth=4, depth_single_blocks=8, axes_dim=(8, 28, 28),
        ),
        AutoEncoderConfig(ch=64, ch_mult=(1, 2, 4, 4), num_res_blocks=1, z_channels=16),
        SamplingDefaults(width=256, height=256, num_inference_steps=8),
        text_encoder="random",
    ),
}


def get_preset(name: str) -> ModelPreset:
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError(
            f"unknown model preset {name!r}; known presets: {', '.join(sorted(PRESETS))}"
        ) from None
