"""Exponential moving average of weights, with a warm-up of the decay.

A fixed 0.999 from step 0 keeps the average mostly made of the random initial weights for
thousands of steps. The decay here is min(decay, (1 + step) / (10 + step)): the averaging window
grows with training (about step/10 steps long) until it reaches 1 / (1 - decay).
"""

from __future__ import annotations

import torch
from torch import nn


class EMA:
    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().clone().float() for k, v in model.state_dict().items()}

    def current_decay(self, step: int) -> float:
        return min(self.decay, (1.0 + step) / (10.0 + step))

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        weight = 1.0 - self.current_decay(step)
        state = model.state_dict()
        # One fused update over all tensors: per-tensor lerps cost a kernel launch each, which
        # on a GPU is most of a small model's step.
        torch._foreach_lerp_([self.shadow[k] for k in state],
                             [v.float() for v in state.values()], weight)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.shadow

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.shadow = {k: v.float().clone() for k, v in state.items()}

    def copy_to(self, model: nn.Module) -> None:
        model.load_state_dict(
            {k: self.shadow[k].to(v.dtype) for k, v in model.state_dict().items()}
        )
