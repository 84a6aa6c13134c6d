"""Checkpoint formats at the edge, one layout inside.

BFL single files, ComfyUI-prefixed files, diffusers folders (single or sharded) and fp8 weights
all load into `Flux` / `AutoEncoder` with BFL parameter names; saving writes BFL files (or
diffusers folders, for `fluxai convert`).
"""

from fluxai.checkpoints.convert import convert
from fluxai.checkpoints.describe import describe
from fluxai.checkpoints.errors import CheckpointError
from fluxai.checkpoints.formats import open_checkpoint
from fluxai.checkpoints.io import (
    load_autoencoder,
    load_transformer,
    save_autoencoder,
    save_transformer,
)

__all__ = [
    "CheckpointError",
    "convert",
    "describe",
    "load_autoencoder",
    "load_transformer",
    "open_checkpoint",
    "save_autoencoder",
    "save_transformer",
]
