"""Loading and saving `Flux` and `AutoEncoder` in every supported layout.

Loading: detect the layout, infer the config from the shapes, build the model on the meta device
(no memory), check every key and shape, then assign tensors straight from the memory-mapped
file(s). Nothing is ever held twice: same-dtype tensors are views of the mapping, converted ones
give their mapped pages back as they go.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import torch
from torch import Tensor, nn

from fluxai.atomic import temporary_sibling
from fluxai.checkpoints.diffusers_config import autoencoder_config, transformer_config
from fluxai.checkpoints.diffusers_keys import AUTOENCODER_KEYS, TRANSFORMER_KEYS, split_sizes
from fluxai.checkpoints.errors import CheckpointError
from fluxai.checkpoints.formats import AUTOENCODER, TRANSFORMER, Checkpoint, open_checkpoint
from fluxai.checkpoints.fp8 import fp8_linear_weights, upcast_per_layer
from fluxai.checkpoints.infer import (
    CONFIG_KEY,
    hints_from_diffusers,
    infer_autoencoder_config,
    infer_flux_config,
    stored_config,
)
from fluxai.checkpoints.safetensors_io import FP8_DTYPES, write_safetensors
from fluxai.config import AutoEncoderConfig, FluxConfig
from fluxai.model.autoencoder import AutoEncoder
from fluxai.model.transformer import Flux

Fp8Mode = Literal["upcast", "keep"]
KIND_KEY = "fluxai_kind"
DIFFUSERS_WEIGHTS = "diffusion_pytorch_model.safetensors"


def _hints(ckpt: Checkpoint) -> dict:
    # Our metadata describes the part it was saved with; a ComfyUI-style file holding both
    # parts carries one part's record, which must not leak into the other's config.
    ours = ckpt.metadata.get(KIND_KEY, ckpt.kind) == ckpt.kind
    hints = stored_config(ckpt.metadata) if ours else {}
    if ckpt.diffusers_config:
        hints.update(hints_from_diffusers(ckpt.kind, ckpt.diffusers_config))
    return hints


def _recorded(ckpt: Checkpoint) -> dict:
    """What the file says its config is, in our field names (to check the weights against)."""
    if ckpt.diffusers_config and ckpt.kind == TRANSFORMER:
        c = ckpt.diffusers_config
        names = {"num_layers": "depth", "num_single_layers": "depth_single_blocks",
                 "num_attention_heads": "num_heads", "joint_attention_dim": "context_in_dim",
                 "pooled_projection_dim": "vec_in_dim", "in_channels": "in_channels",
                 "guidance_embeds": "guidance_embed"}
        return {ours: c[theirs] for theirs, ours in names.items() if c.get(theirs) is not None}
    if ckpt.metadata.get(KIND_KEY, ckpt.kind) == ckpt.kind:
        return stored_config(ckpt.metadata)
    return {}


def infer_config(ckpt: Checkpoint) -> FluxConfig | AutoEncoderConfig:
    """The config of an opened checkpoint, from its shapes plus what the file records.

    Where the file records a config too, the two must agree: a file missing whole blocks
    would otherwise pass as a shallower model.
    """
    infer = infer_flux_config if ckpt.kind == TRANSFORMER else infer_autoencoder_config
    try:
        config = infer(ckpt.shapes, _hints(ckpt))
    except CheckpointError as e:
        raise CheckpointError(f"{ckpt.path}: {e}") from None
    inferred = config.to_dict()
    for name, value in _recorded(ckpt).items():
        if name in inferred and inferred[name] != value:
            raise CheckpointError(f"{ckpt.path}: the file records {name}={value} but its "
                                  f"tensors give {name}={inferred[name]}")
    return config


def check_keys(ckpt: Checkpoint, expected: Mapping[str, tuple[int, ...]], what: str) -> None:
    """Refuse anything but an exact match, naming the first offending key."""
    shapes = ckpt.shapes
    for key, shape in expected.items():
        if key not in shapes:
            raise CheckpointError(f"{ckpt.path}: missing tensor {key} (shape {list(shape)}) "
                                  f"for {what}")
    for key in shapes:
        if key not in expected:
            raise CheckpointError(f"{ckpt.path}: unexpected tensor {ckpt.describe_key(key)} "
                                  f"for {what}")
    for key, shape in expected.items():
        if tuple(shapes[key]) != tuple(shape):
            raise CheckpointError(f"{ckpt.path}: tensor {ckpt.describe_key(key)} has shape "
                                  f"{list(shapes[key])}, expected {list(shape)} for {what}")


def _default_dtype(ckpt: Checkpoint) -> torch.dtype:
    """The dtype holding most of the weights; fp8 files upcast to bf16, their usual partner."""
    totals: dict[torch.dtype, int] = {}
    for src in ckpt.sources.values():
        n = 1
        for s in src.shape:
            n *= s
        totals[src.dtype] = totals.get(src.dtype, 0) + n
    dtype = max(totals, key=totals.get) if totals else torch.float32
    return torch.bfloat16 if dtype in FP8_DTYPES else dtype


def _assign(model: nn.Module, ckpt: Checkpoint, dtype: torch.dtype, keep_fp8: bool) -> None:
    keepable = fp8_linear_weights(model) if keep_fp8 else set()
    state: dict[str, Tensor] = {}
    for key in model.state_dict():
        src_dtype = ckpt.sources[key].dtype
        state[key] = ckpt.tensor(key, None if key in keepable and src_dtype in FP8_DTYPES
                                 else dtype)
    model.load_state_dict(state, strict=True, assign=True)


def _load(ckpt: Checkpoint, model: nn.Module, dtype: torch.dtype | None, fp8: Fp8Mode,
          device: str | torch.device | None) -> nn.Module:
    if fp8 not in ("upcast", "keep"):
        raise ValueError(f"fp8 must be 'upcast' or 'keep', got {fp8!r}")
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    check_keys(ckpt, expected, f"the inferred {type(model).__name__} config")
    target = dtype or _default_dtype(ckpt)
    keep = fp8 == "keep" and ckpt.has_fp8()
    _assign(model, ckpt, target, keep)
    if keep:
        upcast_per_layer(model)
    if device is not None:
        model.to(device)
    return model


def load_transformer(path: str | Path, dtype: torch.dtype | None = None, fp8: Fp8Mode = "upcast",
                     device: str | torch.device | None = None,
                     config: FluxConfig | None = None) -> Flux:
    """A `Flux` from a BFL, ComfyUI or diffusers checkpoint (file or folder), fp8 included.

    `dtype` converts every weight (default: the file's main dtype; bf16 for fp8 files).
    `fp8="keep"` leaves fp8 linear weights in fp8 and upcasts each one when its layer runs.
    `config` replaces the inferred config (it must still match every shape).
    """
    ckpt = open_checkpoint(path, TRANSFORMER)
    cfg = config or infer_config(ckpt)
    with torch.device("meta"):
        model = Flux(cfg)
    return _load(ckpt, model, dtype, fp8, device)


def load_autoencoder(path: str | Path, dtype: torch.dtype | None = None,
                     fp8: Fp8Mode = "upcast", device: str | torch.device | None = None,
                     config: AutoEncoderConfig | None = None) -> AutoEncoder:
    """An `AutoEncoder` from a BFL `ae.safetensors`, a ComfyUI file or a diffusers vae folder."""
    ckpt = open_checkpoint(path, AUTOENCODER)
    cfg = config or infer_config(ckpt)
    with torch.device("meta"):
        model = AutoEncoder(cfg)
    return _load(ckpt, model, dtype, fp8, device)


# -- saving --------------------------------------------------------------------------------------

Layout = Literal["bfl", "diffusers"]


def _save(model: Flux | AutoEncoder, kind: str, path: str | Path, dtype: torch.dtype | None,
          metadata: Mapping[str, str] | None, layout: Layout) -> None:
    state = model.state_dict()
    meta = {"format": "pt", KIND_KEY: kind, CONFIG_KEY: json.dumps(model.config.to_dict()),
            **{str(k): str(v) for k, v in (metadata or {}).items()}}

    def out_dtype(t: Tensor) -> torch.dtype:
        return dtype or t.dtype

    path = Path(path)
    if layout == "bfl":
        shapes = {k: (tuple(t.shape), out_dtype(t)) for k, t in state.items()}
        write_safetensors(path, shapes, ((k, lambda t=t: t) for k, t in state.items()), meta)
        return
    if layout != "diffusers":
        raise ValueError(f"layout must be 'bfl' or 'diffusers', got {layout!r}")
    if kind == TRANSFORMER:
        keymap, config, levels = TRANSFORMER_KEYS, transformer_config(model.config), 0
        hidden = model.config.hidden_size
    else:
        keymap, config = AUTOENCODER_KEYS, autoencoder_config(model.config)
        levels, hidden = len(model.config.ch_mult), None
    shapes: dict[str, tuple[tuple[int, ...], torch.dtype]] = {}
    makers = []
    for key, t in state.items():
        part = keymap.to_diffusers(key, levels)
        if part is None:
            raise CheckpointError(f"tensor {key} has no diffusers name")
        if part.swap:
            a, b = t.chunk(2)
            t = torch.cat([b, a])
        if part.conv1x1:
            t = t.flatten(1)
        start = 0
        for name, rows in zip(part.sources, split_sizes(part, t.shape[0], hidden), strict=True):
            piece = t.narrow(0, start, rows)
            start += rows
            shapes[name] = (tuple(piece.shape), out_dtype(piece))
            makers.append((name, lambda p=piece: p))
    _write_folder(path, config, shapes, makers, meta)


def _write_folder(path: Path, config: dict, shapes: dict, makers: list,
                  meta: dict[str, str]) -> None:
    """A diffusers model folder, built beside its destination and renamed into place."""
    if path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise CheckpointError(f"{path} already exists; choose a new folder")
    tmp = temporary_sibling(path, directory=True)
    try:
        write_safetensors(tmp / DIFFUSERS_WEIGHTS, shapes, makers, meta)
        (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
        if path.exists():
            path.rmdir()
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def save_transformer(model: Flux, path: str | Path, dtype: torch.dtype | None = None,
                     metadata: Mapping[str, str] | None = None, layout: Layout = "bfl") -> None:
    """Write a BFL single file (default) or a diffusers folder; our config and `metadata` go in
    the safetensors metadata, so our own models load back exactly."""
    _save(model, TRANSFORMER, path, dtype, metadata, layout)


def save_autoencoder(model: AutoEncoder, path: str | Path, dtype: torch.dtype | None = None,
                     metadata: Mapping[str, str] | None = None, layout: Layout = "bfl") -> None:
    """Write a BFL `ae.safetensors` (default) or a diffusers vae folder; the config (with its
    scale and shift) is recorded in the metadata."""
    _save(model, AUTOENCODER, path, dtype, metadata, layout)
