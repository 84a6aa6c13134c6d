"""Weight quantization of the transformer's blocks: torchao modes and bitsandbytes NF4.

Only the Linear layers inside the double and single blocks are quantized: they hold >98% of the
parameters, while the small embedders and the final layer set the scale of everything
downstream and cost nothing to keep exact. Each mode names its backend and where it runs;
asking for one that cannot run here is a one-line error saying what can.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from fluxai.model.transformer import Flux


@dataclass(frozen=True)
class QuantMode:
    name: str
    summary: str
    backend: str  # the package that provides it
    needs_cuda: bool = False
    min_capability: tuple[int, int] | None = None  # CUDA compute capability, where it matters


MODES: dict[str, QuantMode] = {m.name: m for m in (
    QuantMode("int8wo", "int8 weights, activations in the model dtype", "torchao"),
    QuantMode("int8dq", "int8 weights and dynamically quantized int8 activations", "torchao"),
    QuantMode("fp8wo", "float8 (e4m3) weights", "torchao", needs_cuda=True,
              min_capability=(8, 9)),
    QuantMode("fp8dq", "float8 weights and dynamically quantized float8 activations",
              "torchao", needs_cuda=True, min_capability=(8, 9)),
    QuantMode("int4wo", "int4 weights, groups of 128, bf16 activations", "torchao",
              needs_cuda=True),
    QuantMode("nf4", "4-bit NormalFloat weights (QLoRA's format)", "bitsandbytes",
              needs_cuda=True),
)}


def check_mode(mode: str, device: torch.device | str | None = None) -> QuantMode:
    """The mode, or a one-line error naming what is wrong and what is allowed."""
    if mode not in MODES:
        raise ValueError(f"unknown quantization mode {mode!r}; choose one of {', '.join(MODES)}")
    spec = MODES[mode]
    dev = torch.device(device) if device is not None else None
    if spec.needs_cuda and (dev is None or dev.type != "cuda"):
        raise ValueError(f"--quantize {mode} runs on CUDA GPUs only; on this device use "
                         f"{', '.join(m for m, s in MODES.items() if not s.needs_cuda)}")
    if spec.min_capability and dev is not None and dev.type == "cuda":
        cap = torch.cuda.get_device_capability(dev)
        if cap < spec.min_capability:
            raise ValueError(f"--quantize {mode} needs compute capability "
                             f"{spec.min_capability[0]}.{spec.min_capability[1]}+ "
                             f"(this GPU: {cap[0]}.{cap[1]}); use int8wo or int8dq")
    _require(spec.backend, mode)
    return spec


def _require(package: str, mode: str) -> None:
    import importlib.util

    if importlib.util.find_spec(package) is None:
        raise ImportError(f"--quantize {mode} needs the {package} package: "
                          f"pip install 'fluxai[perf]'")


def _in_blocks(module: nn.Module, fqn: str) -> bool:
    return isinstance(module, nn.Linear) and fqn.startswith(("double_blocks.", "single_blocks."))


def quantize_transformer(model: Flux, mode: str, device: torch.device | str | None = None
                         ) -> Flux:
    """Quantize `model`'s block Linears in place (on `device`, or where the model is)."""
    device = device if device is not None else next(model.parameters()).device
    spec = check_mode(mode, device)
    if spec.backend == "bitsandbytes":
        return _quantize_nf4(model, torch.device(device))
    _quantize_torchao(model, mode)
    return model


def _torchao_config(mode: str):
    import torchao.quantization as q

    if mode == "int8wo":
        return q.Int8WeightOnlyConfig()
    if mode == "int8dq":
        return q.Int8DynamicActivationInt8WeightConfig()
    if mode == "fp8wo":
        return q.Float8WeightOnlyConfig()
    if mode == "fp8dq":
        return q.Float8DynamicActivationFloat8WeightConfig()
    return q.Int4WeightOnlyConfig(group_size=128)


def _quantize_torchao(model: Flux, mode: str) -> None:
    from torchao.quantization import quantize_

    if mode == "int4wo" and next(model.parameters()).dtype != torch.bfloat16:
        raise ValueError("--quantize int4wo needs a bfloat16 model (its kernels are bf16)")
    quantize_(model, _torchao_config(mode), filter_fn=_in_blocks)


def _quantize_nf4(model: Flux, device: torch.device) -> Flux:
    import bitsandbytes as bnb

    dtype = next(model.parameters()).dtype
    targets = [(fqn, m) for fqn, m in model.named_modules() if _in_blocks(m, fqn)]
    for fqn, linear in targets:
        parent_name, _, child = fqn.rpartition(".")
        q = bnb.nn.Linear4bit(linear.in_features, linear.out_features,
                              bias=linear.bias is not None, compute_dtype=dtype,
                              quant_type="nf4", device="cpu")
        q.weight = bnb.nn.Params4bit(linear.weight.data.cpu(), requires_grad=False,
                                     quant_type="nf4")
        if linear.bias is not None:
            q.bias = nn.Parameter(linear.bias.data.cpu(), requires_grad=False)
        setattr(model.get_submodule(parent_name), child, q.to(device))  # quantizes on transfer
    return model.to(device)


def quantized_bytes(model: nn.Module) -> int:
    """Bytes the model's parameters and buffers hold, counting quantized tensors' real storage."""
    total = 0
    for t in [*model.parameters(), *model.buffers()]:
        total += _storage_bytes(t)
    return total


def _storage_bytes(t: torch.Tensor) -> int:
    # torchao tensor subclasses hold their packed data in inner tensors.
    if hasattr(t, "__tensor_flatten__") and type(t) not in (torch.Tensor, nn.Parameter):
        names, _ = t.__tensor_flatten__()
        return sum(_storage_bytes(getattr(t, n)) for n in names)
    return t.numel() * t.element_size()
