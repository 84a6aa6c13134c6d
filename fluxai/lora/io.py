"""Reading LoRA files, and writing `LoraState` as diffusers/PEFT or kohya safetensors.

Writers are exact: a kohya `qkv` LoRA becomes diffusers `to_q`/`to_k`/`to_v` sharing its down
matrix; diffusers `to_q`/`to_k`/`to_v` become one kohya `qkv` whose down matrices are stacked
and whose up matrix is block-diagonal (sd-scripts' split-qkv layout). Written files get rank
and alpha in their metadata.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from fluxai.atomic import atomic_path
from fluxai.lora.state import LoraPart, LoraState
from fluxai.lora.targets import TargetTable, underscored

LORA_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")


def read_lora_file(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """(tensors, metadata) from a .safetensors file (or a torch pickle of tensors)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"LoRA file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt") as f:
                return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})  # noqa: SIM118
        except (SafetensorError, OSError) as e:
            raise ValueError(f"{path} is not a readable safetensors file: {e}") from None
    if path.suffix in LORA_SUFFIXES:
        obj = torch.load(path, map_location="cpu", weights_only=True)
        if isinstance(obj, dict) and all(isinstance(v, Tensor) for v in obj.values()):
            return obj, {}
        raise ValueError(f"{path} does not hold a flat dict of tensors")
    raise ValueError(f"{path}: unsupported LoRA file type {path.suffix!r}; "
                     f"allowed: {', '.join(LORA_SUFFIXES)}")


def _uniform(parts: list[LoraPart]) -> tuple[int, float] | None:
    """(rank, alpha) when every part shares them, else None."""
    pairs = {(p.rank, p.alpha if p.alpha is not None else p.rank) for p in parts}
    return next(iter(pairs)) if len(pairs) == 1 and None not in next(iter(pairs)) else None


def _lowrank_only(state: LoraState, fmt: str) -> None:
    bad = [p.source for p in state.parts if p.down is None or p.bias is not None]
    if bad:
        raise ValueError(f"cannot write {fmt}: {len(bad)} layers are not plain low-rank "
                         f"(LyCORIS products, diffs or biases), e.g. {bad[0]}")
    if state.replacements:
        raise ValueError(f"cannot write {fmt}: the LoRA replaces norm parameters")


def to_diffusers(state: LoraState, table: TargetTable) -> tuple[dict[str, Tensor], dict[str, str]]:
    """diffusers/PEFT keys (`transformer.<name>.lora_A.weight`) and their metadata; decoder
    updates as `vae.decoder.<name>.lora_A.weight` (diffusers' loader leaves those alone)."""
    _lowrank_only(state, "diffusers")
    parts = state.transformer_parts
    uniform = _uniform(parts)
    out: dict[str, Tensor] = {}
    for part in parts:
        names = table.diffusers_names_within(part.module, part.rows)
        if sum(t.num_rows for _, t in names) != part.num_rows:
            raise ValueError(f"{part.source} covers rows {part.rows} of {part.module}, which "
                             "no set of diffusers layers matches")
        # With mixed ranks/alphas there is no single PEFT alpha: fold the scale into B.
        up = part.up.float() * (1.0 if uniform else part.scale)
        lo = part.rows[0]
        for name, target in names:
            rows = up[target.rows[0] - lo:target.rows[1] - lo]
            out[f"transformer.{name}.lora_A.weight"] = part.down.float().clone()
            out[f"transformer.{name}.lora_B.weight"] = target.to_theirs(rows).contiguous()
    rank, alpha = uniform if uniform else (max(state.ranks(), default=0), None)
    config: dict[str, Any] = {}
    if parts:
        config = {"r": rank, "lora_alpha": alpha if alpha is not None else rank,
                  "target_modules": sorted({k.split(".", 1)[1].rsplit(".lora_", 1)[0]
                                            for k in out if k.endswith("lora_A.weight")}),
                  "lora_dropout": 0.0, "bias": "none", "use_dora": False}
    if parts and not uniform:
        # Per-module ranks differ: tell PEFT each one (alpha = rank: the scale is folded in).
        ranks = {k.split(".", 1)[1].rsplit(".lora_", 1)[0]: v.shape[0]
                 for k, v in out.items() if k.endswith("lora_A.weight")}
        config["rank_pattern"] = {k: r for k, r in ranks.items() if r != rank}
        config["alpha_pattern"] = dict(config["rank_pattern"])
    adapter_meta = {f"transformer.{k}": v for k, v in config.items()}
    summary = {"rank": rank, "alpha": config.get("lora_alpha")} if parts else {}
    decoder = state.decoder_parts
    if decoder:
        dec_uniform = _uniform(decoder)
        for part in decoder:
            out[f"{part.module}.lora_A.weight"] = part.down.float().clone()
            out[f"{part.module}.lora_B.weight"] = (
                part.up.float() * (1.0 if dec_uniform else part.scale)).contiguous()
        dec_rank, dec_alpha = dec_uniform or (max(state.ranks(decoder=True)), None)
        adapter_meta["vae.r"] = dec_rank
        if dec_alpha is not None:
            adapter_meta["vae.lora_alpha"] = dec_alpha
        summary["decoder"] = {"rank": dec_rank, "alpha": dec_alpha or dec_rank,
                              "layers": len(decoder)}
    meta = {"format": "pt", "lora_adapter_metadata": json.dumps(adapter_meta, sort_keys=True),
            "fluxai_lora": json.dumps(summary)}
    return out, meta


def to_kohya(state: LoraState, table: TargetTable) -> tuple[dict[str, Tensor], dict[str, str]]:
    """sd-scripts keys (`lora_unet_<bfl_name>.lora_down.weight`, `.alpha`) and metadata."""
    _lowrank_only(state, "kohya")
    if state.decoder_parts:
        raise ValueError(f"cannot write kohya: the LoRA adapts {len(state.decoder_parts)} "
                         "decoder convolutions, which kohya's layout has no names for; keep it "
                         "in the diffusers layout")
    by_module: dict[str, list[LoraPart]] = {}
    for part in state.parts:
        by_module.setdefault(part.module, []).append(part)
    out: dict[str, Tensor] = {}
    for module, parts in by_module.items():
        stem = "lora_unet_" + underscored(module)
        rows = table.modules[module][1]
        if len(parts) == 1 and parts[0].rows == (0, rows):
            p = parts[0]
            out[f"{stem}.lora_down.weight"] = p.down.float().contiguous()
            out[f"{stem}.lora_up.weight"] = p.up.float().contiguous()
            out[f"{stem}.alpha"] = torch.tensor(float(p.alpha if p.alpha is not None
                                                      else p.rank))
            continue
        # Several row slices (diffusers q/k/v): stack downs, block-diagonal up, scales folded.
        total = sum(p.rank for p in parts)
        up = torch.zeros(rows, total)
        col = 0
        for p in parts:
            up[p.rows[0]:p.rows[1], col:col + p.rank] = p.up.float() * p.scale
            col += p.rank
        out[f"{stem}.lora_down.weight"] = torch.cat([p.down.float() for p in parts])
        out[f"{stem}.lora_up.weight"] = up
        out[f"{stem}.alpha"] = torch.tensor(float(total))
    ranks = state.ranks()
    alphas = state.alphas()
    meta = {"ss_network_module": "networks.lora_flux",
            "ss_network_dim": str(ranks[0] if len(ranks) == 1 else max(ranks, default=0)),
            "ss_network_alpha": str(alphas[0] if len(alphas) == 1 else "mixed")}
    return out, meta


def write_safetensors(tensors: dict[str, Tensor], metadata: dict[str, str], path: Path) -> None:
    """Atomic: a temporary file in the same folder, renamed into place."""
    from safetensors.torch import save_file

    with atomic_path(path) as tmp:
        save_file({k: v.contiguous().clone() for k, v in tensors.items()}, tmp, metadata=metadata)


def save_lora(state: LoraState, path: str | Path, table: TargetTable, fmt: str = "diffusers",
              extra_metadata: dict[str, Any] | None = None) -> Path:
    writers = {"diffusers": to_diffusers, "kohya": to_kohya}
    if fmt not in writers:
        raise ValueError(f"cannot write LoRA format {fmt!r}; allowed: {', '.join(writers)}")
    tensors, meta = writers[fmt](state, table)
    for k, v in (extra_metadata or {}).items():
        meta[k] = v if isinstance(v, str) else json.dumps(v)
    write_safetensors(tensors, meta, Path(path))
    return Path(path)
