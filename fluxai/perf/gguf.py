"""Reading GGUF-quantized FLUX transformers (Q8_0, Q4_K, Q5_K, ... as community files ship).

GGUF stores each tensor under its BFL name (sometimes behind ComfyUI's prefix) in one of ggml's
block-quantized types. We dequantize with the `gguf` package at load time into the requested
dtype: a Q4_K file is a quarter of the download and disk of bf16, and fits in memory
with `--quantize` applied after loading (int8wo/nf4) where the GPU is small. Shapes in GGUF are
listed innermost first; ours are outermost first.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from fluxai.checkpoints import CheckpointError
from fluxai.checkpoints.infer import infer_flux_config
from fluxai.config import FluxConfig
from fluxai.model.transformer import Flux

_PREFIXES = ("model.diffusion_model.", "diffusion_model.")
CONFIG_FIELD = "fluxai.config"  # our config as JSON, when we wrote the file


def _reader(path: Path):
    try:
        import gguf
    except ImportError:
        raise ImportError("reading .gguf files needs the gguf package: "
                          "pip install 'fluxai[perf]'") from None
    if not path.is_file():
        raise FileNotFoundError(f"GGUF file not found: {path}")
    try:
        return gguf, gguf.GGUFReader(str(path))
    except (ValueError, OSError) as e:
        raise CheckpointError(f"{path} is not a readable GGUF file ({e})") from None


def _field_str(reader, name: str) -> str | None:
    field = reader.fields.get(name)
    if field is None:
        return None
    return bytes(field.parts[field.data[0]]).decode("utf-8")


def read_gguf_state_dict(path: str | Path, dtype: torch.dtype = torch.bfloat16,
                         progress: bool = False) -> tuple[dict[str, Tensor], dict]:
    """BFL-named tensors of a GGUF transformer, dequantized to `dtype`, and our stored config."""
    path = Path(path)
    gguf, reader = _reader(path)
    state: dict[str, Tensor] = {}
    for t in tqdm(reader.tensors, desc="dequantize", disable=not progress):
        name = t.name
        for prefix in _PREFIXES:
            name = name.removeprefix(prefix)
        shape = tuple(int(d) for d in reversed(t.shape))
        try:
            values = gguf.quants.dequantize(t.data, t.tensor_type)
        except NotImplementedError:
            kind = getattr(t.tensor_type, "name", t.tensor_type)
            raise CheckpointError(f"{path}: tensor {t.name} is in {kind}, which the gguf "
                                  "package cannot dequantize") from None
        # A copy: unquantized tensors come back as views of the read-only memory map.
        state[name] = torch.from_numpy(np.array(values, copy=True).reshape(shape)).to(dtype)
    stored = _field_str(reader, CONFIG_FIELD)
    return state, json.loads(stored) if stored else {}


def load_gguf_transformer(path: str | Path, dtype: torch.dtype | None = None,
                          progress: bool = False) -> Flux:
    """A `Flux` built from a GGUF file; the config is read off the tensor shapes."""
    state, stored = read_gguf_state_dict(path, dtype or torch.bfloat16, progress)
    config = infer_flux_config({k: tuple(v.shape) for k, v in state.items()}, stored)
    with torch.device("meta"):
        model = Flux(config)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    if missing or extra:
        what = f"missing {missing[0]}" if missing else f"unexpected tensor {extra[0]}"
        raise CheckpointError(f"{path}: not a FLUX transformer GGUF ({what})")
    for k, v in state.items():
        if tuple(v.shape) != tuple(expected[k].shape):
            raise CheckpointError(f"{path}: {k} has shape {tuple(v.shape)}, "
                                  f"expected {tuple(expected[k].shape)}")
    model.load_state_dict(state, assign=True)
    return model.eval()


def save_gguf_transformer(model: Flux, path: str | Path, qtype: str = "Q8_0") -> None:
    """Write `model` as GGUF, 2-D weights in `qtype` (Q8_0, Q4_0, ...) and the rest in F32.

    For tests and for making small quantized files of our own models; big FLUX GGUFs come
    from community converters that use llama.cpp's faster quantizers.
    """
    import gguf

    quant = gguf.GGMLQuantizationType[qtype]
    block = gguf.GGML_QUANT_SIZES[quant][0]
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    writer = gguf.GGUFWriter(str(tmp), arch="flux")
    writer.add_string(CONFIG_FIELD, json.dumps(model.config.to_dict()))
    for name, t in model.state_dict().items():
        arr = t.detach().float().cpu().numpy()
        if arr.ndim == 2 and arr.shape[-1] % block == 0:
            q = gguf.quants.quantize(arr, quant)
            writer.add_tensor(name, q, raw_shape=q.shape, raw_dtype=quant)
        else:
            writer.add_tensor(name, arr)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    tmp.replace(path)


def config_of(path: str | Path) -> FluxConfig:
    state, stored = read_gguf_state_dict(path, torch.float32)
    return infer_flux_config({k: tuple(v.shape) for k, v in state.items()}, stored)
