"""The FLUX.1 rectified-flow transformer, in BFL's module layout and parameter names."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from fluxai.config import FluxConfig
from fluxai.model.layers import (
    EmbedND,
    MLPEmbedder,
    Modulation,
    QKNorm,
    SelfAttention,
    attention,
    split_heads,
    timestep_embedding,
)


def _mlp(hidden: int, mlp_hidden: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Linear(hidden, mlp_hidden, bias=True),
        nn.GELU(approximate="tanh"),
        nn.Linear(mlp_hidden, hidden, bias=True),
    )


def _layer_norm(hidden: int) -> nn.LayerNorm:
    return nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)


class DoubleStreamBlock(nn.Module):
    """Separate weights for image and text tokens, one joint attention over both."""

    def __init__(self, hidden: int, num_heads: int, mlp_ratio: float, qkv_bias: bool = False):
        super().__init__()
        mlp_hidden = int(hidden * mlp_ratio)
        self.num_heads = num_heads
        self.img_mod = Modulation(hidden, double=True)
        self.img_norm1 = _layer_norm(hidden)
        self.img_attn = SelfAttention(hidden, num_heads, qkv_bias)
        self.img_norm2 = _layer_norm(hidden)
        self.img_mlp = _mlp(hidden, mlp_hidden)
        self.txt_mod = Modulation(hidden, double=True)
        self.txt_norm1 = _layer_norm(hidden)
        self.txt_attn = SelfAttention(hidden, num_heads, qkv_bias)
        self.txt_norm2 = _layer_norm(hidden)
        self.txt_mlp = _mlp(hidden, mlp_hidden)

    def _qkv(self, attn: SelfAttention, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        q, k, v = split_heads(attn.qkv(x), self.num_heads)
        q, k = attn.norm(q, k, v)
        return q, k, v

    def forward(self, img: Tensor, txt: Tensor, vec: Tensor, pe: Tensor) -> tuple[Tensor, Tensor]:
        img_mod1, img_mod2 = self.img_mod(vec)
        txt_mod1, txt_mod2 = self.txt_mod(vec)

        img_q, img_k, img_v = self._qkv(self.img_attn, img_mod1.modulate(self.img_norm1(img)))
        txt_q, txt_k, txt_v = self._qkv(self.txt_attn, txt_mod1.modulate(self.txt_norm1(txt)))

        # Text tokens come first in the joint sequence, matching the position ids' order.
        attn = attention(
            torch.cat((txt_q, img_q), dim=2),
            torch.cat((txt_k, img_k), dim=2),
            torch.cat((txt_v, img_v), dim=2),
            pe,
        )
        txt_attn, img_attn = attn[:, : txt.shape[1]], attn[:, txt.shape[1] :]

        img = img + img_mod1.gate * self.img_attn.proj(img_attn)
        img = img + img_mod2.gate * self.img_mlp(img_mod2.modulate(self.img_norm2(img)))
        txt = txt + txt_mod1.gate * self.txt_attn.proj(txt_attn)
        txt = txt + txt_mod2.gate * self.txt_mlp(txt_mod2.modulate(self.txt_norm2(txt)))
        return img, txt


class SingleStreamBlock(nn.Module):
    """One fused projection feeds attention and the MLP in parallel; one fused output projection."""

    def __init__(self, hidden: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        self.hidden_size = hidden
        self.num_heads = num_heads
        self.mlp_hidden_dim = int(hidden * mlp_ratio)
        self.linear1 = nn.Linear(hidden, hidden * 3 + self.mlp_hidden_dim)
        self.linear2 = nn.Linear(hidden + self.mlp_hidden_dim, hidden)
        self.norm = QKNorm(hidden // num_heads)
        self.pre_norm = _layer_norm(hidden)
        self.mlp_act = nn.GELU(approximate="tanh")
        self.modulation = Modulation(hidden, double=False)

    def forward(self, x: Tensor, vec: Tensor, pe: Tensor) -> Tensor:
        mod, _ = self.modulation(vec)
        qkv, mlp = torch.split(
            self.linear1(mod.modulate(self.pre_norm(x))),
            [3 * self.hidden_size, self.mlp_hidden_dim],
            dim=-1,
        )
        q, k, v = split_heads(qkv, self.num_heads)
        q, k = self.norm(q, k, v)
        out = self.linear2(torch.cat((attention(q, k, v, pe), self.mlp_act(mlp)), dim=2))
        return x + mod.gate * out


class LastLayer(nn.Module):
    def __init__(self, hidden: int, patch_size: int, out_channels: int):
        super().__init__()
        self.norm_final = _layer_norm(hidden)
        self.linear = nn.Linear(hidden, patch_size * patch_size * out_channels, bias=True)
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 2 * hidden, bias=True))

    def forward(self, x: Tensor, vec: Tensor) -> Tensor:
        shift, scale = self.adaLN_modulation(vec).chunk(2, dim=1)
        x = (1 + scale[:, None, :]) * self.norm_final(x) + shift[:, None, :]
        return self.linear(x)


class Flux(nn.Module):
    """Velocity model v(x_t, t | text) over packed latent tokens; t = 1 is noise, t = 0 is data."""

    def __init__(self, config: FluxConfig):
        super().__init__()
        self.config = config
        hidden = config.hidden_size
        self.in_channels = config.in_channels
        self.out_channels = config.out_channels
        self.pe_embedder = EmbedND(config.head_dim, config.theta, config.axes_dim)
        self.img_in = nn.Linear(config.in_channels, hidden, bias=True)
        self.time_in = MLPEmbedder(256, hidden)
        self.vector_in = MLPEmbedder(config.vec_in_dim, hidden)
        self.guidance_in = MLPEmbedder(256, hidden) if config.guidance_embed else nn.Identity()
        self.txt_in = nn.Linear(config.context_in_dim, hidden)
        self.double_blocks = nn.ModuleList(
            DoubleStreamBlock(hidden, config.num_heads, config.mlp_ratio, config.qkv_bias)
            for _ in range(config.depth)
        )
        self.single_blocks = nn.ModuleList(
            SingleStreamBlock(hidden, config.num_heads, config.mlp_ratio)
            for _ in range(config.depth_single_blocks)
        )
        self.final_layer = LastLayer(hidden, 1, config.out_channels)
        self._memos: dict[str, tuple[tuple[tuple[Tensor, int], ...], Tensor]] = {}
        # Set by fluxai.perf.cache.enable_step_cache: reuses block outputs between steps.
        self.step_cache = None

    def forward(
        self,
        img: Tensor,
        img_ids: Tensor,
        txt: Tensor,
        txt_ids: Tensor,
        timesteps: Tensor,
        y: Tensor,
        guidance: Tensor | None = None,
    ) -> Tensor:
        img, txt, vec, pe = self.prepare(img, img_ids, txt, txt_ids, timesteps, y, guidance)
        if self.step_cache is not None:
            return self.step_cache.run(self, img, txt, vec, pe)
        img, txt = self.run_double_blocks(img, txt, vec, pe)
        return self.head(self.run_single_blocks(img, txt, vec, pe), txt.shape[1], vec)

    def prepare(self, img: Tensor, img_ids: Tensor, txt: Tensor, txt_ids: Tensor,
                timesteps: Tensor, y: Tensor, guidance: Tensor | None = None
                ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Embedded image and text tokens, the conditioning vector and the RoPE table."""
        if img.ndim != 3 or txt.ndim != 3:
            raise ValueError("img and txt must be (batch, tokens, channels) tensors")
        img = self.img_in(img)
        vec = self.time_in(timestep_embedding(timesteps, 256))
        if self.config.guidance_embed:
            if guidance is None:
                raise ValueError("this model is guidance-distilled: pass a guidance strength")
            vec = vec + self.guidance_in(timestep_embedding(guidance, 256))
        vec = vec + self.vector_in(y)
        pe = self._memo("pe", (txt_ids, img_ids),
                        lambda: self.pe_embedder(torch.cat((txt_ids, img_ids), dim=1)))
        return img, self.txt_in(txt), vec, pe

    def run_double_blocks(self, img: Tensor, txt: Tensor, vec: Tensor, pe: Tensor,
                          start: int = 0) -> tuple[Tensor, Tensor]:
        for block in self.double_blocks[start:]:
            img, txt = block(img, txt, vec, pe)
        return img, txt

    def run_single_blocks(self, img: Tensor, txt: Tensor, vec: Tensor, pe: Tensor) -> Tensor:
        """Joint (text, image) sequence through the single-stream blocks; the image part out."""
        x = torch.cat((txt, img), dim=1)
        for block in self.single_blocks:
            x = block(x, vec, pe)
        return x[:, txt.shape[1] :, ...]

    def head(self, img: Tensor, txt_len: int, vec: Tensor) -> Tensor:
        del txt_len  # the signature leaves room for heads that read the text tokens
        return self.final_layer(img, vec)

    def _memo(self, slot: str, inputs: tuple[Tensor, ...], compute) -> Tensor:
        """Step-invariant, parameter-free work (the RoPE table), done once per sampling run.

        The sampler hands the model the same id tensors at every step, so identity plus the
        in-place version counter is an exact key; keeping the inputs referenced means their
        memory (and address) cannot be reused by another tensor while cached.
        """
        # Inference-mode tensors keep no version counter: identity alone must do for them.
        key = tuple((t, -1 if t.is_inference() else t._version) for t in inputs)
        hit = self._memos.get(slot)
        if hit is not None and len(hit[0]) == len(key) and all(
                a is b and va == vb for (a, va), (b, vb) in zip(hit[0], key, strict=True)):
            return hit[1]
        out = compute()
        self._memos[slot] = (key, out)
        return out

    def _apply(self, fn, recurse=True):
        self._memos.clear()  # a dtype or device change invalidates what was computed before
        return super()._apply(fn, recurse)


def count_parameters(config: FluxConfig) -> int:
    """Parameter count computed from the config alone (built on the meta device, no memory)."""
    with torch.device("meta"):
        model = Flux(config)
    return sum(p.numel() for p in model.parameters())
