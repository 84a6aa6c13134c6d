"""fluxai: FLUX.1 in plain PyTorch."""

from fluxai.config import AutoEncoderConfig, FluxConfig, SamplingDefaults, get_preset
from fluxai.model.autoencoder import AutoEncoder
from fluxai.model.transformer import Flux
from fluxai.pipeline import FluxPipeline, FluxPipelineOutput

__version__ = "0.1.0"


def __getattr__(name: str):
    # Loaders pull in safetensors and the format converters; import them on first use.
    if name in ("load_transformer", "load_autoencoder", "save_transformer", "save_autoencoder"):
        from fluxai import checkpoints

        return getattr(checkpoints, name)
    raise AttributeError(f"module 'fluxai' has no attribute {name!r}")


__all__ = [
    "AutoEncoder",
    "AutoEncoderConfig",
    "Flux",
    "FluxConfig",
    "FluxPipeline",
    "FluxPipelineOutput",
    "SamplingDefaults",
    "get_preset",
    "load_autoencoder",
    "load_transformer",
    "save_autoencoder",
    "save_transformer",
]
