"""Training configuration: one dataclass per stage, read from TOML or YAML.

Every knob is documented in `configs/flux-tiny.toml`; the dataclass defaults are that
recipe's values (a test keeps them equal), so a config file only needs to say what it changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import tomllib

from fluxai.config import AutoEncoderConfig, FluxConfig
from fluxai.shapes.scenes import check_layout
from fluxai.shapes.world import WORLD
from fluxai.train.precision import PRECISIONS


@dataclass
class DataConfig:
    count: int = 50_000  # distinct rendered scenes
    captions_per_image: int = 3  # phrasings per scene; one is drawn per epoch
    size: int = 128
    seed: int = 0
    supersample: int = 1  # 1: hard edges, which an L1-trained autoencoder reproduces crisply
    layout: str = "free"  # what the prompt leaves free: "free" anywhere, "canonical" fixed cells


@dataclass
class AutoEncoderTrain:
    steps: int = 10_000
    batch_size: int = 32
    lr: float = 2e-3
    warmup: int = 50
    kl_weight: float = 1e-4  # keeps the latent smooth enough to generate into
    l1_weight: float = 1.0
    l2_weight: float = 1.0
    object_weight: float = 10.0  # loss weight of object pixels relative to background ones
    palette_weight: float = 0.1  # cross-entropy of each pixel's nearest palette colour
    crop: int = 64  # training crop side: half centred on an object, half uniform
    full_image_steps: int = 600  # final steps on whole canvases, so GroupNorm sees their statistics
    # After the latents are cached (and, in `fluxai train`, after the flow model): the decoder
    # alone, on whole canvases, from the frozen encoder's latents.
    decoder_steps: int = 2_000
    decoder_lr: float = 5e-4
    decoder_noise: float = 0.05  # latent noise, relative to the latents' std


@dataclass
class FlowTrain:
    steps: int = 11_500
    batch_size: int = 128
    lr: float = 8e-4
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.99)
    warmup: int = 500
    grad_clip: float = 1.0
    caption_dropout: float = 0.1  # empty-prompt examples teach the unconditional branch for CFG
    logit_normal_mean: float = 0.0
    logit_normal_std: float = 1.0
    shift: bool = True  # resolution-dependent time shift of the sampled timesteps
    ema_decay: float = 0.999
    compile: bool = True  # torch.compile the transformer (a minute of compiling, then faster)
    # How often a scene of each kind is drawn, relative to 1 for a kind not named: a continued
    # run can spend its steps where the model is weakest ({} draws every scene alike).
    kind_weights: dict[str, float] = field(default_factory=dict)
    # Exchange loss (0: off). The flow loss alone lets a model draw either named shape in either
    # place; this asks it, for scenes of two distinct shapes, to predict the velocity worse with
    # a caption of the same scene with the shapes exchanged than with its own caption: a logistic
    # loss on the relative gap (exchanged - own) / own, weighted by t (where noise hides the
    # layout, only the caption can tell the shapes' places).
    exchange_weight: float = 0.0
    exchange_batch: int = 32  # exchanged examples per step, a fixed number for torch.compile
    exchange_temperature: float = 0.25  # the relative gap that counts as clearly told apart
    # A wall-clock budget for this invocation's flow training (0: none), for a GPU lent for
    # minutes: the learning-rate schedule runs on whichever of steps and time is further along,
    # and training stops, checkpointed and exported, when the time is spent.
    max_minutes: float = 0.0


@dataclass
class OutputConfig:
    dir: str = "runs/flux-tiny"
    sample_every: int = 2_000  # steps between sample grids
    checkpoint_every: int = 500  # steps between resumable checkpoints
    sample_prompts: list[str] = field(default_factory=lambda: [
        "a red star above a blue circle",
        "three green triangles",
        "a yellow square",
        "a small white cross in the top left corner on a black background",
    ])
    sample_steps: int = 20
    sample_cfg: float = 4.0


@dataclass
class TrainConfig:
    name: str = "flux-tiny"
    text_encoder: str = "minilm"
    text_max_length: int = 24
    device: str = "cpu"
    threads: int = 0  # 0: torch's default
    precision: str = "auto"  # bf16 autocast where bf16 is native (CUDA, AMX CPUs), else fp32
    # An exported model (shipped name or folder) to continue from: its autoencoder stands in for
    # stage 1 and its transformer is the flow model's first weights. "": from scratch.
    init: str = ""
    init_flow: bool = True  # false: only the autoencoder comes from `init`; the flow starts anew
    autoencoder: AutoEncoderConfig = field(default_factory=lambda: AutoEncoderConfig(
        resolution=128, ch=32, ch_mult=(1, 1, 2, 2, 4), num_res_blocks=1, z_channels=16,
        norm_groups=8, scale_factor=1.0, shift_factor=0.0,
    ))
    transformer: FluxConfig = field(default_factory=lambda: FluxConfig(
        in_channels=64, out_channels=64, vec_in_dim=384, context_in_dim=384, hidden_size=256,
        num_heads=4, depth=3, depth_single_blocks=5, axes_dim=(8, 28, 28), guidance_embed=False,
    ))
    data: DataConfig = field(default_factory=DataConfig)
    ae_train: AutoEncoderTrain = field(default_factory=AutoEncoderTrain)
    flow_train: FlowTrain = field(default_factory=FlowTrain)
    output: OutputConfig = field(default_factory=OutputConfig)


def _merge(obj: Any, values: dict[str, Any], where: str) -> Any:
    known = {f.name: f for f in fields(obj)}
    for key, value in values.items():
        if key not in known:
            raise ValueError(
                f"unknown key {where}{key!r}; allowed: {', '.join(sorted(known))}"
            )
        current = getattr(obj, key)
        if is_dataclass(current) and isinstance(value, dict):
            if isinstance(current, FluxConfig | AutoEncoderConfig):
                merged = {**current.to_dict(), **value}
                setattr(obj, key, type(current).from_dict(merged))
            else:
                _merge(current, value, f"{where}{key}.")
        else:
            setattr(obj, key, tuple(value) if isinstance(current, tuple) else value)
    return obj


def parse_override(text: str) -> dict[str, Any]:
    """`section.key=value` (the value in TOML syntax; a bare word is a string) as the nested
    table a recipe file would give."""
    key, sep, value = text.partition("=")
    parts = key.strip().split(".")
    if not sep or not all(p.strip() for p in parts):
        raise ValueError(f"override {text!r} is not of the form section.key=value, "
                         "e.g. flow_train.lr=3e-4")
    try:
        parsed = tomllib.loads(f"v = {value.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        parsed = value.strip()
    table: dict[str, Any] = {parts[-1].strip(): parsed}
    for part in reversed(parts[:-1]):
        table = {part.strip(): table}
    return table


def load_train_config(path: str | Path | None, overrides: list[str] | None = None
                      ) -> TrainConfig:
    """A recipe file (TOML or YAML; None: the defaults), then `overrides` (see parse_override)
    over it, validated as a whole."""
    config = TrainConfig()
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"training config not found: {path}")
        text = path.read_text()
        if path.suffix in (".yaml", ".yml"):
            import yaml

            values = yaml.safe_load(text) or {}
        else:
            values = tomllib.loads(text)
        config = _merge(config, values, "")
    for override in overrides or []:
        config = _merge(config, parse_override(override), "")
    # Checked here, not at the first training step minutes later.
    if config.precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, "
                         f"got {config.precision!r}")
    check_layout(config.data.layout, "data.layout")
    check_kind_weights(config.flow_train.kind_weights)
    check_exchange(config.flow_train)
    if config.flow_train.max_minutes < 0:
        raise ValueError(f"flow_train.max_minutes must be >= 0 (0: no limit), "
                         f"got {config.flow_train.max_minutes}")
    return config


def check_exchange(tc: FlowTrain) -> None:
    if tc.exchange_weight < 0:
        raise ValueError(f"flow_train.exchange_weight must be >= 0, got {tc.exchange_weight}")
    if tc.exchange_batch < 1:
        raise ValueError(f"flow_train.exchange_batch must be a positive integer, "
                         f"got {tc.exchange_batch}")
    if tc.exchange_temperature <= 0:
        raise ValueError(f"flow_train.exchange_temperature must be > 0, "
                         f"got {tc.exchange_temperature}")


def check_kind_weights(weights: dict[str, float]) -> None:
    for kind, weight in weights.items():
        if kind not in WORLD.kinds:
            raise ValueError(f"flow_train.kind_weights: unknown kind {kind!r}; allowed: "
                             f"{', '.join(WORLD.kinds)}")
        if not isinstance(weight, int | float) or isinstance(weight, bool) or weight <= 0:
            raise ValueError(f"flow_train.kind_weights.{kind} must be a positive number, "
                             f"got {weight!r}")
