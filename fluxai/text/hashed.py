"""A deterministic, weight-free encoder for random-weight test models.

Each token is embedded by a seeded hash of its text, so the same prompt always gives the same
embeddings and different prompts give different ones, with nothing to download.
"""

from __future__ import annotations

import hashlib

import torch
from torch import Tensor


class HashedEncoder:
    def __init__(self, context_dim: int = 48, pooled_dim: int = 32, max_length: int = 16,
                 device: torch.device | str = "cpu"):
        self.context_dim = context_dim
        self.pooled_dim = pooled_dim
        self.max_length = max_length
        self.device = torch.device(device)

    def to(self, device: torch.device | str) -> HashedEncoder:
        self.device = torch.device(device)
        return self

    @staticmethod
    def _vector(text: str, dim: int) -> Tensor:
        seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
        return torch.randn(dim, generator=torch.Generator().manual_seed(seed))

    def encode(self, prompts: list[str]) -> tuple[Tensor, Tensor]:
        context = torch.zeros(len(prompts), self.max_length, self.context_dim)
        pooled = torch.stack([self._vector("pooled:" + p, self.pooled_dim) for p in prompts])
        for i, prompt in enumerate(prompts):
            for j, word in enumerate(prompt.split()[: self.max_length]):
                context[i, j] = self._vector(word, self.context_dim)
        return context.to(self.device), pooled.to(self.device)
