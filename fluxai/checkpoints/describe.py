"""What a checkpoint is, read from its headers alone (no weights are loaded)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from fluxai.checkpoints.formats import AUTOENCODER, TRANSFORMER, open_checkpoint
from fluxai.checkpoints.io import infer_config


def _dtype_name(dtype: Any) -> str:
    return str(dtype).removeprefix("torch.")


def describe_part(path: Path, kind: str | None = None) -> dict[str, Any]:
    ckpt = open_checkpoint(path, kind)
    config = infer_config(ckpt)
    counts: Counter[str] = Counter()
    for src in ckpt.sources.values():
        n = 1
        for s in src.shape:
            n *= s
        counts[_dtype_name(src.dtype)] += n
    total = sum(counts.values())
    if ckpt.kind == TRANSFORMER:
        variant = "dev (guidance-distilled)" if config.guidance_embed else "schnell (no guidance)"
    else:
        variant = f"{config.z_channels}-channel latents, downscale {config.downscale}"
    return {
        "path": str(ckpt.path),
        "kind": ckpt.kind,
        "layout": ckpt.layout,
        "variant": variant,
        "dtype": " + ".join(f"{d} ({n / total:.0%})" for d, n in counts.most_common())
        if len(counts) > 1 else next(iter(counts), "none"),
        "parameters": total,
        "tensors": len(ckpt.sources),
        "config": config.to_dict(),
    }


def describe(path: str | Path) -> dict[str, Any]:
    """Layout, kind, inferred config, dtype and parameter count of a file or folder; model
    folders (ours, diffusers pipelines) describe both their transformer and autoencoder."""
    path = Path(path).expanduser()
    if path.is_dir() and ((path / "model_index.json").is_file()
                          or (path / "transformer.safetensors").is_file()):
        return {"transformer": describe_part(path, TRANSFORMER),
                "autoencoder": describe_part(path, AUTOENCODER)}
    return describe_part(path)
