"""Resumable training state: one file per stage, replaced atomically."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from fluxai.atomic import torch_save


def save_state(path: Path, **state: Any) -> None:
    state["rng"] = torch.get_rng_state()
    torch_save(state, path)


def load_state(path: Path) -> dict[str, Any] | None:
    if not path.exists():
        return None
    state = torch.load(path, weights_only=False)
    torch.set_rng_state(state.pop("rng"))
    return state


def resume(path: Path, model: nn.Module, optimizer: torch.optim.Optimizer
           ) -> tuple[int, list[float], dict[str, Any] | None]:
    """Load a stage's model and optimizer from its checkpoint, if it has one.

    Returns (steps done, their losses, the whole state for any stage-specific entries)."""
    state = load_state(path)
    if state is None:
        return 0, [], None
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    return state["step"], state["losses"], state
