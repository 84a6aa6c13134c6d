"""LoRA: every shared format converted into one internal form, runtime adapters, training."""

from fluxai.lora.adapters import LoadReport, LoraAdapters, LoraError
from fluxai.lora.formats import FORMATS, convert, detect_format
from fluxai.lora.io import read_lora_file, save_lora
from fluxai.lora.state import LoraPart, LoraState
from fluxai.lora.targets import TargetTable

__all__ = [
    "FORMATS",
    "LoadReport",
    "LoraAdapters",
    "LoraError",
    "LoraPart",
    "LoraState",
    "TargetTable",
    "convert",
    "detect_format",
    "read_lora_file",
    "save_lora",
]
