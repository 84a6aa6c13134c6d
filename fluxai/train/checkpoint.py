"""Resumable training state: one file per stage, replaced atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from fluxai.train.data import atomic_save


def save_state(path: Path, **state: Any) -> None:
    state["rng"] = torch.get_rng_state()
    atomic_save(state, path)


def load_state(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    state = torch.load(path, weights_only=False)
    torch.set_rng_state(state.pop("rng"))
    return state
