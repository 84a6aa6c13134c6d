"""Where models come from: names shipped in the package, local folders, presets, the hub.

Everything resolves to the same parts (`Flux`, `AutoEncoder`, a text encoder, sampling
defaults), loaded through `fluxai.checkpoints`, so a pipeline never cares where its weights
were found.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from fluxai.config import PRESETS, SamplingDefaults
from fluxai.model.autoencoder import AutoEncoder
from fluxai.model.transformer import Flux
from fluxai.text.base import build_text_encoder

WEIGHTS_DIR = Path(__file__).parent / "weights"
DEFAULT_MODEL = "flux-tiny"


def shipped_models() -> list[str]:
    if not WEIGHTS_DIR.is_dir():
        return []
    return sorted(p.name for p in WEIGHTS_DIR.iterdir() if (p / "transformer.safetensors").exists())


def known_models() -> list[str]:
    return sorted({*shipped_models(), *PRESETS})


def is_fluxai_folder(path: Path) -> bool:
    return (path / "transformer.safetensors").is_file() and (path / "ae.safetensors").is_file()


def fluxai_folder(name_or_path: str) -> Path:
    """The folder of a shipped model, or a local fluxai model folder."""
    if name_or_path in shipped_models():
        return WEIGHTS_DIR / name_or_path
    path = Path(name_or_path).expanduser()
    if is_fluxai_folder(path):
        return path
    raise FileNotFoundError(
        f"{name_or_path!r} is neither a shipped model ({', '.join(shipped_models())}) nor a "
        "fluxai model folder (transformer.safetensors + ae.safetensors)")


def _read_model_metadata(path: Path) -> dict[str, Any]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    return json.loads(meta["fluxai_model"]) if "fluxai_model" in meta else {}


def load_fluxai_folder(path: Path, dtype: torch.dtype | None = None) -> dict[str, Any]:
    """Our own layout: BFL-layout transformer.safetensors and ae.safetensors; the transformer's
    metadata names the text encoder and the sampling defaults the model was tuned for."""
    from fluxai.checkpoints import load_autoencoder, load_transformer

    meta = _read_model_metadata(path / "transformer.safetensors")
    transformer = load_transformer(path / "transformer.safetensors", dtype=dtype or torch.float32)
    vae = load_autoencoder(path / "ae.safetensors", dtype=dtype or torch.float32)
    encoder = build_text_encoder(meta.get("text_encoder", "t5-clip"),
                                 **meta.get("text_encoder_args", {}))
    return {
        "transformer": transformer.eval(),
        "vae": vae.eval(),
        "text_encoder": encoder,
        "defaults": SamplingDefaults(**meta.get("sampling", {})),
        "name": meta.get("name", path.name),
    }


def load_diffusers_folder(path: Path, dtype: torch.dtype | None = None,
                          defaults: SamplingDefaults | None = None) -> dict[str, Any]:
    """A diffusers FLUX.1 pipeline folder (transformer/, vae/, text_encoder/, text_encoder_2/)."""
    from fluxai.checkpoints import load_autoencoder, load_transformer
    from fluxai.text.t5clip import T5ClipEncoder

    transformer = load_transformer(path / "transformer", dtype=dtype)
    vae = load_autoencoder(path / "vae", dtype=dtype)
    if defaults is None:
        guided = transformer.config.guidance_embed
        defaults = SamplingDefaults() if guided else PRESETS["flux-schnell"].sampling
    encoder = T5ClipEncoder(
        t5=path, t5_subfolder="text_encoder_2", clip=path, clip_subfolder="text_encoder",
        max_length=defaults.max_sequence_length, dtype=dtype or torch.bfloat16,
    )
    return {"transformer": transformer.eval(), "vae": vae.eval(), "text_encoder": encoder,
            "defaults": defaults, "name": path.name}


def random_preset(name: str, dtype: torch.dtype | None = None, seed: int = 0) -> dict[str, Any]:
    """A preset with seeded random weights: for tests and benchmarks, never for real images."""
    preset = PRESETS[name]
    torch.manual_seed(seed)
    transformer = Flux(preset.transformer)
    vae = AutoEncoder(preset.autoencoder)
    encoder = build_text_encoder(
        "random", context_dim=preset.transformer.context_in_dim,
        pooled_dim=preset.transformer.vec_in_dim,
    )
    if dtype is not None:
        transformer.to(dtype)
        vae.to(dtype)
    return {"transformer": transformer.eval(), "vae": vae.eval(), "text_encoder": encoder,
            "defaults": preset.sampling, "name": f"{name} (random weights)"}


def load_pipeline_parts(name_or_path: str, dtype: torch.dtype | None = None,
                        **_: Any) -> dict[str, Any]:
    path = Path(name_or_path).expanduser()
    if name_or_path in shipped_models() or is_fluxai_folder(path):
        return load_fluxai_folder(fluxai_folder(name_or_path), dtype)
    if path.is_dir():
        if (path / "model_index.json").is_file():
            return load_diffusers_folder(path, dtype)
        raise FileNotFoundError(
            f"{path} is neither a fluxai model folder (transformer.safetensors + "
            "ae.safetensors) nor a diffusers pipeline folder (model_index.json)"
        )
    if name_or_path in PRESETS:
        preset = PRESETS[name_or_path]
        if preset.hub_id is None:
            return random_preset(name_or_path, dtype)
        return load_diffusers_folder(_download(preset.hub_id), dtype, preset.sampling)
    if name_or_path.count("/") == 1 and not path.exists() and not name_or_path.startswith("."):
        return load_diffusers_folder(_download(name_or_path), dtype)
    if path.suffix == ".safetensors" or path.exists():
        raise FileNotFoundError(
            f"{name_or_path}: a single checkpoint file; use FluxPipeline.from_single_file "
            "(CLI: --model accepts folders and model names)" if path.exists()
            else f"model file not found: {name_or_path}"
        )
    raise ValueError(
        f"unknown model {name_or_path!r}; known models: {', '.join(known_models())}, "
        "or a local folder, or a hub id like black-forest-labs/FLUX.1-schnell"
    )


def load_single_file_parts(path: Path, dtype: torch.dtype | None = None,
                           vae: AutoEncoder | str | Path | None = None,
                           text_encoder: Any = None, config_repo: str | None = None,
                           **_: Any) -> dict[str, Any]:
    """A lone transformer file; the autoencoder and text encoders come from arguments or from
    the FLUX.1 release whose config matches (dev if guidance-distilled, else schnell)."""
    from fluxai.checkpoints import load_autoencoder, load_transformer

    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.suffix.lower() == ".gguf":  # block-quantized community files (fluxai.perf.gguf)
        from fluxai.perf.gguf import load_gguf_transformer

        transformer = load_gguf_transformer(path, dtype=dtype)
    else:
        transformer = load_transformer(path, dtype=dtype)
    release = "flux-dev" if transformer.config.guidance_embed else "flux-schnell"
    preset = PRESETS[release]
    repo = config_repo or preset.hub_id
    if vae is None or isinstance(vae, str | Path):
        vae = load_autoencoder(Path(vae) if vae else _download(repo) / "vae", dtype=dtype)
    if text_encoder is None:
        from fluxai.text.t5clip import T5ClipEncoder

        root = _download(repo)
        text_encoder = T5ClipEncoder(
            t5=root, t5_subfolder="text_encoder_2", clip=root, clip_subfolder="text_encoder",
            max_length=preset.sampling.max_sequence_length, dtype=dtype or torch.bfloat16)
    return {"transformer": transformer.eval(), "vae": vae.eval(), "text_encoder": text_encoder,
            "defaults": preset.sampling, "name": path.stem}


def _download(repo_id: str) -> Path:
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(repo_id, allow_patterns=[
        "model_index.json", "transformer/*", "vae/*", "text_encoder/*", "text_encoder_2/*",
        "tokenizer/*", "tokenizer_2/*", "scheduler/*",
    ]))
