"""BFL <-> diffusers parameter names for the Flux transformer and the autoencoder.

One table per model says which diffusers tensors make up each BFL tensor. Most are renames;
BFL fuses what diffusers keeps apart (q/k/v in one projection; q/k/v and the MLP input in a
single block's `linear1`), so a BFL tensor may be several diffusers tensors stacked along dim 0.
Diffusers' final norm emits (scale, shift) where BFL's emits (shift, scale): its halves swap.
The autoencoder's attention projections are 1x1 convolutions in BFL and linears in diffusers,
and diffusers numbers the decoder's levels from the bottom where BFL numbers them from the top.

Placeholders in templates: {i} a block index, {w} weight|bias, {u} a decoder level counted from
the bottom (diffusers), whose BFL index is levels - 1 - u.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_TRANSFORMER: list[tuple[str, tuple[str, ...]]] = [
    ("img_in.{w}", ("x_embedder.{w}",)),
    ("txt_in.{w}", ("context_embedder.{w}",)),
    ("time_in.in_layer.{w}", ("time_text_embed.timestep_embedder.linear_1.{w}",)),
    ("time_in.out_layer.{w}", ("time_text_embed.timestep_embedder.linear_2.{w}",)),
    ("vector_in.in_layer.{w}", ("time_text_embed.text_embedder.linear_1.{w}",)),
    ("vector_in.out_layer.{w}", ("time_text_embed.text_embedder.linear_2.{w}",)),
    ("guidance_in.in_layer.{w}", ("time_text_embed.guidance_embedder.linear_1.{w}",)),
    ("guidance_in.out_layer.{w}", ("time_text_embed.guidance_embedder.linear_2.{w}",)),
    ("double_blocks.{i}.img_mod.lin.{w}", ("transformer_blocks.{i}.norm1.linear.{w}",)),
    ("double_blocks.{i}.txt_mod.lin.{w}", ("transformer_blocks.{i}.norm1_context.linear.{w}",)),
    ("double_blocks.{i}.img_attn.qkv.{w}", ("transformer_blocks.{i}.attn.to_q.{w}",
                                            "transformer_blocks.{i}.attn.to_k.{w}",
                                            "transformer_blocks.{i}.attn.to_v.{w}")),
    ("double_blocks.{i}.txt_attn.qkv.{w}", ("transformer_blocks.{i}.attn.add_q_proj.{w}",
                                            "transformer_blocks.{i}.attn.add_k_proj.{w}",
                                            "transformer_blocks.{i}.attn.add_v_proj.{w}")),
    ("double_blocks.{i}.img_attn.norm.query_norm.scale",
     ("transformer_blocks.{i}.attn.norm_q.weight",)),
    ("double_blocks.{i}.img_attn.norm.key_norm.scale",
     ("transformer_blocks.{i}.attn.norm_k.weight",)),
    ("double_blocks.{i}.txt_attn.norm.query_norm.scale",
     ("transformer_blocks.{i}.attn.norm_added_q.weight",)),
    ("double_blocks.{i}.txt_attn.norm.key_norm.scale",
     ("transformer_blocks.{i}.attn.norm_added_k.weight",)),
    ("double_blocks.{i}.img_attn.proj.{w}", ("transformer_blocks.{i}.attn.to_out.0.{w}",)),
    ("double_blocks.{i}.txt_attn.proj.{w}", ("transformer_blocks.{i}.attn.to_add_out.{w}",)),
    ("double_blocks.{i}.img_mlp.0.{w}", ("transformer_blocks.{i}.ff.net.0.proj.{w}",)),
    ("double_blocks.{i}.img_mlp.2.{w}", ("transformer_blocks.{i}.ff.net.2.{w}",)),
    ("double_blocks.{i}.txt_mlp.0.{w}", ("transformer_blocks.{i}.ff_context.net.0.proj.{w}",)),
    ("double_blocks.{i}.txt_mlp.2.{w}", ("transformer_blocks.{i}.ff_context.net.2.{w}",)),
    ("single_blocks.{i}.linear1.{w}", ("single_transformer_blocks.{i}.attn.to_q.{w}",
                                       "single_transformer_blocks.{i}.attn.to_k.{w}",
                                       "single_transformer_blocks.{i}.attn.to_v.{w}",
                                       "single_transformer_blocks.{i}.proj_mlp.{w}")),
    ("single_blocks.{i}.linear2.{w}", ("single_transformer_blocks.{i}.proj_out.{w}",)),
    ("single_blocks.{i}.modulation.lin.{w}", ("single_transformer_blocks.{i}.norm.linear.{w}",)),
    ("single_blocks.{i}.norm.query_norm.scale",
     ("single_transformer_blocks.{i}.attn.norm_q.weight",)),
    ("single_blocks.{i}.norm.key_norm.scale",
     ("single_transformer_blocks.{i}.attn.norm_k.weight",)),
    ("final_layer.linear.{w}", ("proj_out.{w}",)),
    ("final_layer.adaLN_modulation.1.{w}", ("norm_out.linear.{w}",)),
]
_SWAPPED = {"final_layer.adaLN_modulation.1.{w}"}

_RESNET = ("norm1", "conv1", "norm2", "conv2")
_AE: list[tuple[str, tuple[str, ...]]] = [
    (f"{side}.{bfl}.{{w}}", (f"{side}.{diff}.{{w}}",))
    for side in ("encoder", "decoder")
    for bfl, diff in (("conv_in", "conv_in"), ("conv_out", "conv_out"),
                      ("norm_out", "conv_norm_out"))
]
for _side in ("encoder", "decoder"):
    for _n, _d in (("block_1", "0"), ("block_2", "1")):
        _AE += [(f"{_side}.mid.{_n}.{p}.{{w}}", (f"{_side}.mid_block.resnets.{_d}.{p}.{{w}}",))
                for p in _RESNET]
    _AE += [
        (f"{_side}.mid.attn_1.norm.{{w}}", (f"{_side}.mid_block.attentions.0.group_norm.{{w}}",)),
        (f"{_side}.mid.attn_1.q.{{w}}", (f"{_side}.mid_block.attentions.0.to_q.{{w}}",)),
        (f"{_side}.mid.attn_1.k.{{w}}", (f"{_side}.mid_block.attentions.0.to_k.{{w}}",)),
        (f"{_side}.mid.attn_1.v.{{w}}", (f"{_side}.mid_block.attentions.0.to_v.{{w}}",)),
        (f"{_side}.mid.attn_1.proj_out.{{w}}", (f"{_side}.mid_block.attentions.0.to_out.0.{{w}}",)),
    ]
_AE += [(f"encoder.down.{{i}}.block.{{j}}.{p}.{{w}}",
         (f"encoder.down_blocks.{{i}}.resnets.{{j}}.{p}.{{w}}",)) for p in _RESNET]
_AE += [
    ("encoder.down.{i}.block.{j}.nin_shortcut.{w}",
     ("encoder.down_blocks.{i}.resnets.{j}.conv_shortcut.{w}",)),
    ("encoder.down.{i}.downsample.conv.{w}", ("encoder.down_blocks.{i}.downsamplers.0.conv.{w}",)),
    ("decoder.up.{u}.block.{j}.nin_shortcut.{w}",
     ("decoder.up_blocks.{u}.resnets.{j}.conv_shortcut.{w}",)),
    ("decoder.up.{u}.upsample.conv.{w}", ("decoder.up_blocks.{u}.upsamplers.0.conv.{w}",)),
]
_AE += [(f"decoder.up.{{u}}.block.{{j}}.{p}.{{w}}",
         (f"decoder.up_blocks.{{u}}.resnets.{{j}}.{p}.{{w}}",)) for p in _RESNET]
# BFL's attention projections are 1x1 convolutions; diffusers' are linears.
_CONV1X1 = re.compile(r"(en|de)coder\.mid\.attn_1\.(q|k|v|proj_out)\.weight$")

_GROUPS = {"i": r"(?P<i>\d+)", "j": r"(?P<j>\d+)", "u": r"(?P<u>\d+)", "w": r"(?P<w>weight|bias)"}


def _regex(template: str) -> re.Pattern[str]:
    parts = re.split(r"\{(\w)\}", template)
    out = "".join(re.escape(p) if k % 2 == 0 else _GROUPS[p] for k, p in enumerate(parts))
    return re.compile(out + "$")


@dataclass(frozen=True)
class Part:
    """BFL tensor `bfl` is the dim-0 concatenation of `sources`; `swap` exchanges its halves."""

    bfl: str
    sources: tuple[str, ...]
    swap: bool = False
    conv1x1: bool = False


class KeyMap:
    """Translate names in either direction for one model family."""

    def __init__(self, table: list[tuple[str, tuple[str, ...]]]):
        self._rules = [(bfl, diff, _regex(bfl), [_regex(d) for d in diff]) for bfl, diff in table]

    @staticmethod
    def _fill(template: str, groups: dict[str, str], levels: int, flip: bool) -> str:
        g = dict(groups)
        if flip and "u" in g:
            g["u"] = str(levels - 1 - int(g["u"]))  # the flip is its own inverse
        return template.format(**g)

    def from_diffusers(self, key: str, levels: int = 0) -> tuple[Part, int] | None:
        """The BFL tensor a diffusers tensor belongs to and its position in it, or None."""
        for bfl, diff, _, regexes in self._rules:
            for pos, rx in enumerate(regexes):
                m = rx.match(key)
                if m:
                    g = m.groupdict()
                    target = self._fill(bfl, g, levels, True)
                    sources = tuple(self._fill(d, g, levels, False) for d in diff)
                    return Part(target, sources, bfl in _SWAPPED, bool(_CONV1X1.match(target))), pos
        return None

    def to_diffusers(self, key: str, levels: int = 0) -> Part | None:
        """The diffusers tensors a BFL tensor splits into, or None for an unknown name."""
        for bfl, diff, rx, _ in self._rules:
            m = rx.match(key)
            if m:
                g = m.groupdict()
                sources = tuple(self._fill(d, g, levels, True) for d in diff)
                return Part(key, sources, bfl in _SWAPPED, bool(_CONV1X1.match(key)))
        return None


TRANSFORMER_KEYS = KeyMap(_TRANSFORMER)
AUTOENCODER_KEYS = KeyMap(_AE)


def split_sizes(part: Part, dim0: int, hidden_size: int | None) -> list[int]:
    """How a fused BFL tensor of `dim0` rows splits into its diffusers parts."""
    n = len(part.sources)
    if n == 1:
        return [dim0]
    if n == 4:  # single block linear1: q, k, v (hidden each), then the MLP input
        if hidden_size is None:
            raise ValueError("splitting linear1 needs the hidden size")
        return [hidden_size] * 3 + [dim0 - 3 * hidden_size]
    return [dim0 // n] * n
