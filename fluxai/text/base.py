"""The text-encoder interface the pipeline and trainer speak, and its prompt-embedding cache."""

from __future__ import annotations

from collections import OrderedDict
from typing import Protocol, runtime_checkable

import torch
from torch import Tensor


@runtime_checkable
class TextEncoder(Protocol):
    """Maps prompts to (context tokens (B, L, context_dim), pooled vector (B, pooled_dim))."""

    context_dim: int
    pooled_dim: int

    def encode(self, prompts: list[str]) -> tuple[Tensor, Tensor]: ...

    def to(self, device: torch.device | str) -> TextEncoder: ...


class CachedTextEncoder:
    """LRU cache in front of an encoder: a prompt is encoded once per process, however often used.

    Cached tensors live on the CPU in the encoder's output dtype, so the cache does not pin
    accelerator memory; callers move what they use.
    """

    def __init__(self, encoder: TextEncoder, maxsize: int = 512):
        self.encoder = encoder
        self.maxsize = maxsize
        self._cache: OrderedDict[str, tuple[Tensor, Tensor]] = OrderedDict()
        self.misses = 0

    @property
    def context_dim(self) -> int:
        return self.encoder.context_dim

    @property
    def pooled_dim(self) -> int:
        return self.encoder.pooled_dim

    def to(self, device: torch.device | str) -> CachedTextEncoder:
        self.encoder = self.encoder.to(device)
        return self

    def encode(self, prompts: list[str]) -> tuple[Tensor, Tensor]:
        missing = list(dict.fromkeys(p for p in prompts if p not in self._cache))
        if missing:
            self.misses += len(missing)
            context, pooled = self.encoder.encode(missing)
            for i, prompt in enumerate(missing):
                self._cache[prompt] = (context[i].detach().cpu(), pooled[i].detach().cpu())
        for prompt in prompts:
            self._cache.move_to_end(prompt)
        contexts = torch.stack([self._cache[p][0] for p in prompts])
        pooleds = torch.stack([self._cache[p][1] for p in prompts])
        while len(self._cache) > self.maxsize:
            self._cache.popitem(last=False)
        return contexts, pooleds


def build_text_encoder(kind: str, **kwargs) -> TextEncoder:
    """The encoder a model was trained with, by the name recorded in its preset or checkpoint."""
    if kind == "minilm":
        from fluxai.text.minilm import MiniLMEncoder

        return MiniLMEncoder(**kwargs)
    if kind == "t5-clip":
        from fluxai.text.t5clip import T5ClipEncoder

        return T5ClipEncoder(**kwargs)
    if kind == "random":
        from fluxai.text.hashed import HashedEncoder

        return HashedEncoder(**kwargs)
    raise ValueError(f"unknown text encoder {kind!r}; known: minilm, t5-clip, random")
