"""The one internal form of a LoRA: updates to BFL-named linear layers, by output-row range,
and LoCon-style updates to the decoder's convolutions (`vae.decoder.<name>`, whole layers).

Every file format is converted into this at the edge (`formats.py`); the runtime adapters,
fusing, `fluxai lora info` and the writers all read only this.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor


@dataclass
class LoraPart:
    """delta W[rows] = scale * up @ down (low rank) or `dense` (LyCORIS); plus an optional bias.

    On a convolution, down is a (rank, in, k, k) kernel and up a (out, rank, 1, 1) one (LoCon):
    the update runs as two convolutions and fuses into one k x k kernel.
    """

    module: str  # BFL name of the nn.Linear (or `vae.decoder.` name of the Conv2d) it updates
    rows: tuple[int, int]  # the output rows it updates, [lo, hi)
    down: Tensor | None = None  # (rank, in_features) or (rank, in, k, k)
    up: Tensor | None = None  # (hi - lo, rank) or (out, rank, 1, 1)
    dense: Tensor | None = None  # (hi - lo, in_features): LoKr/LoHa products, full diffs
    bias: Tensor | None = None  # (hi - lo,)
    alpha: float | None = None  # None: scale 1
    source: str = ""  # the file's name for it, for messages

    @property
    def rank(self) -> int | None:
        return None if self.down is None else self.down.shape[0]

    @property
    def scale(self) -> float:
        if self.alpha is None or self.rank is None:
            return 1.0
        return self.alpha / self.rank

    @property
    def in_features(self) -> int | None:
        if self.down is not None:
            return self.down.shape[1]
        return None if self.dense is None else self.dense.shape[1]

    @property
    def num_rows(self) -> int:
        return self.rows[1] - self.rows[0]

    @property
    def is_conv(self) -> bool:
        return self.down is not None and self.down.ndim == 4

    def delta_weight(self) -> Tensor | None:
        """The full (rows, in) weight update in float32, scale included ((out, in, k, k) on a
        convolution)."""
        if self.dense is not None:
            return self.dense.float()
        if self.down is None:
            return None
        if self.is_conv:
            delta = self.up.float().flatten(1) @ self.down.float().flatten(1)
            return self.scale * delta.view(-1, *self.down.shape[1:])
        return self.scale * (self.up.float() @ self.down.float())

    def delta_output(self, x: Tensor, conv: torch.nn.Conv2d | None = None) -> Tensor:
        """What this part adds to the layer's output rows for input x (…, in) -> (…, rows);
        on a convolution (given as `conv`, for its stride and padding), (N, in, H, W) ->
        (N, out, H', W')."""
        if self.is_conv:
            h = F.conv2d(x, self.down, None, conv.stride, conv.padding, conv.dilation)
            out = F.conv2d(h, self.up)
            return out * self.scale if self.scale != 1.0 else out
        if self.dense is not None:
            out = F.linear(x, self.dense)
        elif self.down is not None:
            out = F.linear(F.linear(x, self.down), self.up)
            if self.scale != 1.0:
                out = out * self.scale
        else:
            out = torch.zeros(*x.shape[:-1], self.num_rows, dtype=x.dtype, device=x.device)
        return out if self.bias is None else out + self.bias

    def _tensors(self) -> list[Tensor]:
        return [t for t in (self.down, self.up, self.dense, self.bias) if t is not None]

    @property
    def trainable(self) -> bool:
        return any(t.requires_grad for t in self._tensors())

    @property
    def device(self) -> torch.device:
        return self._tensors()[0].device

    @property
    def dtype(self) -> torch.dtype:
        return self._tensors()[0].dtype

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None
           ) -> LoraPart:
        def move(t: Tensor | None) -> Tensor | None:
            return None if t is None else t.to(device=device, dtype=dtype)

        return LoraPart(self.module, self.rows, move(self.down), move(self.up), move(self.dense),
                        move(self.bias), self.alpha, self.source)


@dataclass
class LoraState:
    """A whole LoRA file after conversion, with what could not be used and why."""

    format: str  # detected format, e.g. "kohya", "diffusers", "lycoris-lokr"
    parts: list[LoraPart] = field(default_factory=list)
    # BFL parameters the file replaces outright (BFL control LoRAs' QK-norm scales).
    replacements: dict[str, Tensor] = field(default_factory=dict)
    text_encoder_keys: list[str] = field(default_factory=list)  # reported, not applied
    unmatched: dict[str, str] = field(default_factory=dict)  # key -> why it names nothing
    misfits: dict[str, str] = field(default_factory=dict)  # key -> why its shapes do not fit
    total_keys: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def mapped_keys(self) -> int:
        return (self.total_keys - len(self.unmatched) - len(self.misfits)
                - len(self.text_encoder_keys))

    @property
    def modules(self) -> list[str]:
        return sorted({p.module for p in self.parts})

    @property
    def decoder_parts(self) -> list[LoraPart]:
        return [p for p in self.parts if p.is_conv]

    @property
    def transformer_parts(self) -> list[LoraPart]:
        return [p for p in self.parts if not p.is_conv]

    def ranks(self, decoder: bool = False) -> list[int]:
        """The transformer parts' ranks (the decoder's with `decoder=True`)."""
        parts = self.decoder_parts if decoder else self.transformer_parts
        return sorted({p.rank for p in parts if p.rank is not None})

    def alphas(self, decoder: bool = False) -> list[float]:
        parts = self.decoder_parts if decoder else self.transformer_parts
        return sorted({p.alpha for p in parts if p.alpha is not None})
