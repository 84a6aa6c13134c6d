"""Converting a checkpoint between the BFL single-file layout and a diffusers model folder."""

from __future__ import annotations

from pathlib import Path

import torch

from fluxai.checkpoints.errors import CheckpointError
from fluxai.checkpoints.formats import TRANSFORMER, open_checkpoint
from fluxai.checkpoints.io import (
    load_autoencoder,
    load_transformer,
    save_autoencoder,
    save_transformer,
)


def convert(src: str | Path, dst: str | Path, to: str, dtype: torch.dtype | None = None) -> str:
    """Read any supported layout at `src`, write `to` ("bfl" file or "diffusers" folder) at
    `dst`; returns the kind converted. fp8 weights stay fp8 unless `dtype` is given."""
    src, dst = Path(src).expanduser(), Path(dst).expanduser()
    if to not in ("bfl", "diffusers"):
        raise ValueError(f"--to must be bfl or diffusers, got {to!r}")
    if to == "bfl" and dst.suffix != ".safetensors":
        raise CheckpointError(f"{dst}: a BFL checkpoint is one .safetensors file; "
                              "name the output *.safetensors")
    if to == "bfl" and dst.exists():
        raise CheckpointError(f"{dst} already exists; choose a new file name")
    kind = open_checkpoint(src).kind
    if kind == TRANSFORMER:
        model = load_transformer(src, fp8="keep")
        save_transformer(model, dst, dtype=dtype, layout=to)  # type: ignore[arg-type]
    else:
        ae = load_autoencoder(src, fp8="keep")
        save_autoencoder(ae, dst, dtype=dtype, layout=to)  # type: ignore[arg-type]
    return kind
