"""LoRA file layouts: detect which tool wrote a file and convert it into `LoraState`.

Key layouts (read from the tools' public code; the full table is in docs/lora.md):
- diffusers/PEFT and ai-toolkit: `transformer.<diffusers name>.lora_A/lora_B.weight`, alpha in
  the `lora_adapter_metadata` JSON or `.alpha` keys (ai-toolkit folds alpha into the weights);
- kohya/sd-scripts: `lora_unet_<BFL name with _>.lora_down/lora_up.weight` and `.alpha`;
  split-qkv files stack the q/k/v downs and make the up block-diagonal (no special case needed);
- ComfyUI: `diffusion_model.<BFL name>` with either tensor naming;
- OneTrainer: `lora_transformer_<diffusers name with _>`, kohya tensors;
- XLabs: `double_blocks.N.processor.{qkv,proj}_lora{1,2}.down/up.weight` (1 image, 2 text);
- BFL control LoRAs: bare BFL names, `lora_B.bias`, QK-norm `.scale` replacements and an
  `img_in` with more input channels;
- LyCORIS LoHa (`hada_w1_a`...) and LoKr (`lokr_w1`, `lokr_w2`, or their `_a`/`_b` factors),
  under kohya or `lycoris_` names; they become dense updates.

Text-encoder keys (`lora_te*`, `text_encoder*`) are counted and reported, not applied.
fluxai's own decoder updates (`vae.decoder.<BFL name>.lora_A/lora_B.weight`, 4-d kernels, alpha
as `vae.lora_alpha` in `lora_adapter_metadata`) ride along in a diffusers-layout file.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from typing import Any

import torch
from torch import Tensor

from fluxai.lora.state import LoraPart, LoraState
from fluxai.lora.targets import DECODER_PREFIX, Target, TargetTable

FORMATS = ("diffusers", "ai-toolkit", "kohya", "comfyui", "onetrainer", "xlabs", "bfl",
           "bfl-control", "lycoris-loha", "lycoris-lokr")

# Tensor roles by key ending; the first match wins, so longer endings come first.
_ROLE_PATTERNS = [
    (re.compile(r"\.lora_A(?:\.[\w-]+)?\.weight$"), "down"),
    (re.compile(r"\.lora_B(?:\.[\w-]+)?\.weight$"), "up"),
    (re.compile(r"\.lora_B(?:\.[\w-]+)?\.bias$"), "bias"),
    (re.compile(r"\.lora_down\.weight$"), "down"),
    (re.compile(r"\.lora_up\.weight$"), "up"),
    (re.compile(r"\.lora\.down\.weight$"), "down"),
    (re.compile(r"\.lora\.up\.weight$"), "up"),
    (re.compile(r"\.down\.weight$"), "down"),  # XLabs
    (re.compile(r"\.up\.weight$"), "up"),
    (re.compile(r"\.alpha$"), "alpha"),
    (re.compile(r"\.(hada_w[12]_[ab])$"), None),  # role is the matched name
    (re.compile(r"\.(lokr_w[12](?:_[ab])?)$"), None),
    (re.compile(r"\.(hada_t[12]|lokr_t[12])$"), None),
    (re.compile(r"\.diff$"), "dense"),
    (re.compile(r"\.diff_b$"), "bias"),
    (re.compile(r"\.dora_scale$"), "dora_scale"),
    (re.compile(r"\.(scale)$"), "replace"),  # BFL control LoRAs' QK-norm scales
]

_PREFIXES = ("base_model.model.", "model.diffusion_model.", "diffusion_model.", "transformer.",
             "lora_unet_", "lora_transformer_", "lycoris_", "lora_flux_")
_TEXT_ENCODER = ("lora_te", "text_encoder", "lora_clip", "lora_t5", "te1.", "te2.")


def split_key(key: str) -> tuple[str, str] | None:
    """'transformer.x.attn.to_q.lora_A.weight' -> ('transformer.x.attn.to_q', 'down')."""
    for pattern, role in _ROLE_PATTERNS:
        m = pattern.search(key)
        if m:
            return key[: m.start()], role or m.group(1)
    return None


def strip_prefix(stem: str) -> str:
    for prefix in _PREFIXES:
        if stem.startswith(prefix):
            return stem[len(prefix):]
    return stem


def is_text_encoder_key(key: str) -> bool:
    return key.startswith(_TEXT_ENCODER)


def _mentions(metadata: dict[str, Any], word: str) -> bool:
    return any(word in str(v).lower() for v in metadata.values())


def detect_format(keys: list[str], metadata: dict[str, Any] | None = None) -> str:
    """The tool that wrote a file, from its key names (and metadata where keys are ambiguous)."""
    metadata = metadata or {}
    ks = [k for k in keys if not is_text_encoder_key(k)] or keys
    if ks and all(k.startswith(DECODER_PREFIX) for k in ks):
        return "diffusers"  # decoder updates only: fluxai writes them in diffusers' layout
    ks = [k for k in ks if not k.startswith(DECODER_PREFIX)] or ks
    if any(".processor.qkv_lora" in k or ".processor.proj_lora" in k for k in ks):
        return "xlabs"
    if any(".lokr_" in k for k in ks):
        return "lycoris-lokr"
    if any(".hada_" in k for k in ks):
        return "lycoris-loha"
    if any(k.startswith("lora_transformer_") for k in ks):
        return "onetrainer"
    if any(k.startswith("lora_unet_") for k in ks):
        return "kohya"
    if any(k.startswith(("diffusion_model.", "model.diffusion_model.")) for k in ks):
        return "comfyui"
    if any(k.startswith(("double_blocks.", "single_blocks.", "img_in.")) for k in ks):
        control = "img_in.lora_A.weight" in keys and any(k.endswith("norm.scale") for k in keys)
        return "bfl-control" if control else "bfl"
    if any(k.startswith(("transformer.", "base_model.model.", "transformer_blocks.",
                         "single_transformer_blocks.")) for k in ks):
        return "ai-toolkit" if _mentions(metadata, "ai-toolkit") else "diffusers"
    return "unknown"


def _adapter_metadata(metadata: dict[str, Any]) -> dict[str, Any]:
    """diffusers' `lora_adapter_metadata` JSON as a dict ({} when absent or unreadable)."""
    raw = metadata.get("lora_adapter_metadata")
    if not raw:
        return {}
    try:
        return json.loads(raw) if isinstance(raw, str) else dict(raw)
    except ValueError:
        return {}


def _peft_alphas(metadata: dict[str, Any]) -> tuple[float | None, dict[str, float]]:
    """(lora_alpha, alpha_pattern) from diffusers' `lora_adapter_metadata` JSON, if present."""
    meta = _adapter_metadata(metadata)
    alpha = meta.get("transformer.lora_alpha", meta.get("lora_alpha"))
    pattern = meta.get("transformer.alpha_pattern", meta.get("alpha_pattern")) or {}
    return (None if alpha is None else float(alpha)), {k: float(v) for k, v in pattern.items()}


def _lycoris_dense(t: dict[str, Tensor], alpha: float | None) -> Tensor:
    """LoHa: (w1a @ w1b) * (w2a @ w2b) * alpha / rank. LoKr: kron(w1, w2) * alpha / rank,
    where the rank is that of whichever factor is decomposed (scale 1 when neither is)."""
    if "hada_w1_a" in t:
        rank = t["hada_w1_b"].shape[0]
        w = (t["hada_w1_a"].float() @ t["hada_w1_b"].float()) * \
            (t["hada_w2_a"].float() @ t["hada_w2_b"].float())
        return w * (alpha / rank if alpha is not None else 1.0)
    rank = None
    w1 = t.get("lokr_w1")
    if w1 is None:
        rank = t["lokr_w1_b"].shape[0]
        w1 = t["lokr_w1_a"].float() @ t["lokr_w1_b"].float()
    w2 = t.get("lokr_w2")
    if w2 is None:
        rank = t["lokr_w2_b"].shape[0]
        w2 = t["lokr_w2_a"].float() @ t["lokr_w2_b"].float()
    scale = alpha / rank if alpha is not None and rank is not None else 1.0
    return torch.kron(w1.float(), w2.float()) * scale


_LOHA = {"hada_w1_a", "hada_w1_b", "hada_w2_a", "hada_w2_b"}


def _has_lokr(t: dict[str, Tensor]) -> bool:
    return (("lokr_w1" in t or {"lokr_w1_a", "lokr_w1_b"} <= t.keys())
            and ("lokr_w2" in t or {"lokr_w2_a", "lokr_w2_b"} <= t.keys()))


def _build_part(stem: str, target: Target, t: dict[str, Tensor], alpha: float | None,
                in_features: int) -> LoraPart:
    """One module's tensors -> a LoraPart in BFL rows; raises ValueError naming the misfit."""
    rows = target.num_rows
    if "dora_scale" in t:
        raise ValueError("DoRA (dora_scale) is not supported")
    if {"hada_t1", "hada_t2", "lokr_t2", "lokr_t1"} & t.keys():
        raise ValueError("LyCORIS Tucker (conv) factors do not apply to linear layers")
    part = LoraPart(target.module, target.rows, alpha=alpha, source=stem)
    if "down" in t or "up" in t:
        if "down" not in t or "up" not in t:
            raise ValueError(f"has {'down' if 'down' in t else 'up'} but not its pair")
        down, up = t["down"], t["up"]
        if down.ndim != 2 or up.ndim != 2 or up.shape[1] != down.shape[0]:
            raise ValueError(f"down {tuple(down.shape)} and up {tuple(up.shape)} do not chain")
        if down.shape[1] != in_features or up.shape[0] != rows:
            raise ValueError(f"expects ({rows}, {in_features}), file has "
                             f"({up.shape[0]}, {down.shape[1]})")
        part.down, part.up = down, target.to_ours(up)
    elif t.keys() >= _LOHA or _has_lokr(t) or "dense" in t:
        dense = t["dense"].float() if "dense" in t else _lycoris_dense(t, alpha)
        if tuple(dense.shape) != (rows, in_features):
            raise ValueError(f"expects ({rows}, {in_features}), file has {tuple(dense.shape)}")
        part.dense, part.alpha = target.to_ours(dense), None
    elif "bias" not in t:
        raise ValueError(f"incomplete: only {', '.join(sorted(t))}")
    if "bias" in t:
        if tuple(t["bias"].shape) != (rows,):
            raise ValueError(f"bias expects ({rows},), file has {tuple(t['bias'].shape)}")
        part.bias = target.to_ours(t["bias"])
    return part


def convert(state_dict: dict[str, Tensor], table: TargetTable,
            metadata: dict[str, Any] | None = None, fmt: str | None = None) -> LoraState:
    """Any supported layout -> LoraState for the model shape `table` was built for.

    Nothing is thrown away silently: keys that do not map are kept in `unmatched` with the
    reason, text-encoder keys in `text_encoder_keys`.
    """
    metadata = dict(metadata or {})
    fmt = fmt or detect_format(list(state_dict), metadata)
    state = LoraState(format=fmt, total_keys=len(state_dict), metadata=metadata)
    peft_alpha, alpha_pattern = _peft_alphas(metadata)

    groups: dict[str, dict[str, Tensor]] = defaultdict(dict)
    keys_of: dict[str, list[str]] = defaultdict(list)
    for key, tensor in state_dict.items():
        if is_text_encoder_key(key):
            state.text_encoder_keys.append(key)
            continue
        split = split_key(key)
        if split is None:
            state.unmatched[key] = "not a LoRA tensor name this loader knows"
            continue
        stem, role = split
        groups[stem][role] = tensor
        keys_of[stem].append(key)
        # Tensors before scalars, so messages quote the key a user will recognise.
        keys_of[stem].sort(key=lambda k: k.endswith(".alpha"))

    decoder_alpha = _adapter_metadata(metadata).get("vae.lora_alpha")
    for stem, tensors in groups.items():
        name = strip_prefix(stem)
        try:
            if name.startswith(DECODER_PREFIX):
                alpha = tensors.pop("alpha", None)
                alpha = decoder_alpha if alpha is None else float(alpha.float().item())
                state.parts.append(_conv_part(name, tensors, alpha, table))
                continue
            if set(tensors) == {"replace"}:
                _replacement(state, name, tensors["replace"], table)
                continue
            target = table.lookup(name)
            if target is None:
                raise LookupError("names no layer of this model")
            alpha = tensors.pop("alpha", None)
            if alpha is not None:
                alpha = float(alpha.float().item())
            elif "down" in tensors and fmt in ("diffusers", "bfl", "bfl-control", "comfyui"):
                alpha = alpha_pattern.get(name, peft_alpha)
            state.parts.append(
                _build_part(stem, target, tensors, alpha, table.in_features(target.module)))
        except LookupError as e:
            for key in keys_of[stem]:
                state.unmatched[key] = str(e)
        except ValueError as e:
            for key in keys_of[stem]:
                state.misfits[key] = str(e)
    return state


def _conv_part(name: str, t: dict[str, Tensor], alpha: float | None, table: TargetTable
               ) -> LoraPart:
    """A decoder convolution's LoCon pair -> a LoraPart; raises naming what does not fit."""
    if not table.convs:
        raise LookupError("adapts the autoencoder's decoder, and this base model's autoencoder "
                          "is not known here")
    if name not in table.convs:
        raise LookupError("names no convolution of this model's decoder")
    if set(t) != {"down", "up"}:
        raise ValueError(f"a decoder update needs lora_A and lora_B, file has "
                         f"{', '.join(sorted(t))}")
    cin, cout, k = table.convs[name]
    down, up = t["down"], t["up"]
    if down.ndim != 4 or up.ndim != 4 or up.shape[1] != down.shape[0] or up.shape[2:] != (1, 1):
        raise ValueError(f"down {tuple(down.shape)} and up {tuple(up.shape)} are not a "
                         "(rank, in, k, k) and (out, rank, 1, 1) pair")
    if tuple(down.shape[1:]) != (cin, k, k) or up.shape[0] != cout:
        raise ValueError(f"expects a ({cout}, {cin}, {k}, {k}) convolution, file has "
                         f"({up.shape[0]}, {', '.join(map(str, down.shape[1:]))})")
    return LoraPart(name, (0, cout), down, up, alpha=None if alpha is None else float(alpha),
                    source=name)


def _replacement(state: LoraState, name: str, tensor: Tensor, table: TargetTable) -> None:
    """QK-norm scales of BFL control LoRAs: whole-parameter replacements."""
    m = re.fullmatch(r"(double_blocks\.\d+\.(?:img|txt)_attn|single_blocks\.\d+)"
                     r"\.norm\.(query|key)_norm", name)
    if m is None or not (f"{m.group(1)}.qkv" in table.modules
                         or f"{m.group(1)}.linear1" in table.modules):
        raise LookupError("names no parameter of this model")
    head_dim = table.config.head_dim
    if tuple(tensor.shape) != (head_dim,):
        raise ValueError(f"expects ({head_dim},), file has {tuple(tensor.shape)}")
    state.replacements[name + ".scale"] = tensor
