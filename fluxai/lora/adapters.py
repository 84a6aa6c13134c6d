"""Runtime LoRA adapters on a `Flux` model: several at once, weighted, fusable, removable.

Adapters attach as forward hooks on the model's own nn.Linear layers, so parameter names and
the state dict never change. A part that covers a row slice of a fused layer (diffusers' `to_q`
on BFL's `img_attn.qkv`) adds its output to exactly those rows. Fusing bakes the active
adapters into the weights after saving a copy of every weight it touches; unfusing puts those
copies back, so the base model returns bit for bit. Given the autoencoder too, an adapter may
also update the decoder's convolutions (`vae.decoder.*` parts), hooked and fused the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from fluxai.lora.state import LoraPart, LoraState
from fluxai.lora.targets import DECODER_PREFIX, TargetTable

log = logging.getLogger("fluxai.lora")


class LoraError(ValueError):
    """A LoRA that cannot be applied; the message is one line and the model is unchanged."""


@dataclass
class LoadReport:
    adapter: str
    format: str
    modules: int
    mapped_keys: int
    total_keys: int
    text_encoder_skipped: int = 0
    unmatched: dict[str, str] = field(default_factory=dict)
    decoder_modules: int = 0

    def summary(self) -> str:
        text = (f"LoRA {self.adapter!r} ({self.format}): {self.mapped_keys}/{self.total_keys} "
                f"keys onto {self.modules} layers")
        if self.decoder_modules:
            text += f" ({self.decoder_modules} of them decoder convolutions)"
        if self.text_encoder_skipped:
            text += (f"; {self.text_encoder_skipped} text-encoder keys skipped (fluxai applies "
                     "LoRAs to the transformer only)")
        if self.unmatched:
            key, why = next(iter(self.unmatched.items()))
            text += f"; {len(self.unmatched)} keys matched nothing (e.g. {key}: {why})"
        return text


def _example(d: dict[str, str]) -> str:
    key, why = next(iter(d.items()))
    return f"{key}: {why}"


def check_applicable(state: LoraState, label: str) -> None:
    """Refuse, in one line, a LoRA that cannot be applied as a whole."""
    where = f"cannot load LoRA {label} (detected format: {state.format})"
    hint = ""
    if state.format == "bfl-control":
        hint = ("; BFL control LoRAs need a control-image input (extra img_in channels), "
                "which fluxai's pipeline does not have")
    if state.misfits:
        raise LoraError(f"{where}: {len(state.misfits)} of {state.total_keys} keys do not fit "
                        f"this model's layers, e.g. {_example(state.misfits)}{hint}")
    if state.replacements:
        raise LoraError(f"{where}: it replaces {len(state.replacements)} norm parameters"
                        f"{hint or ', which runtime adapters cannot do'}")
    if not state.parts:
        if state.text_encoder_keys and not state.unmatched:
            raise LoraError(f"{where}: all {len(state.text_encoder_keys)} keys are text-encoder "
                            "keys, and fluxai applies LoRAs to the transformer only")
        example = f", e.g. {_example(state.unmatched)}" if state.unmatched else ""
        raise LoraError(f"{where}: none of its {state.total_keys} keys maps onto this "
                        f"model{example}")


def _file_in_folder(folder: Path, weight_name: str | None) -> Path:
    if weight_name:
        return folder / weight_name
    default = folder / "pytorch_lora_weights.safetensors"
    if default.is_file():
        return default
    found = sorted(folder.glob("*.safetensors"))
    if len(found) != 1:
        raise LoraError(f"{folder} holds {len(found)} .safetensors files; name one with "
                        "weight_name=")
    return found[0]


class LoraAdapters:
    """The named adapters of one model, and which of them run, with what weight."""

    def __init__(self, model: nn.Module, vae: nn.Module | None = None):
        self.model = model
        self.vae = vae
        self.table = TargetTable(model.config, None if vae is None else vae.config)
        self.parts: dict[str, list[LoraPart]] = {}
        self.weights: dict[str, float] = {}
        self.active: list[str] = []
        self.fused: dict[str, float] = {}  # adapter -> the weight baked into the base weights
        self._originals: dict[str, tuple[Tensor, Tensor | None]] = {}
        self._by_module: dict[str, list[tuple[str, int]]] = {}
        self._hooks: dict[str, torch.utils.hooks.RemovableHandle] = {}
        self._hooked: dict[str, nn.Module] = {}
        self._model_hook: torch.utils.hooks.RemovableHandle | None = None

    # -- adding ---------------------------------------------------------------------------------
    def _layer(self, name: str) -> nn.Linear | nn.Conv2d:
        """The layer a part names: a transformer nn.Linear or a decoder nn.Conv2d."""
        if name.startswith(DECODER_PREFIX):
            if self.vae is None:
                raise LoraError(f"{name} is a decoder layer, and these adapters have no "
                                "autoencoder")
            module = self.vae.decoder.get_submodule(name[len(DECODER_PREFIX):])
            kind = nn.Conv2d
        else:
            module, kind = self.model.get_submodule(name), nn.Linear
        if not isinstance(module, kind):
            raise LoraError(f"{name} is not a {kind.__name__} layer")
        return module

    @staticmethod
    def _fits(part: LoraPart, layer: nn.Linear | nn.Conv2d) -> bool:
        if isinstance(layer, nn.Conv2d):
            return (part.is_conv and part.rows == (0, layer.out_channels)
                    and tuple(part.down.shape[1:]) == tuple(layer.weight.shape[1:]))
        return not part.is_conv and part.rows[1] <= layer.out_features and (
            part.in_features is None or part.in_features == layer.in_features)

    def add(self, name: str, state: LoraState, label: str | None = None) -> LoadReport:
        """Attach a converted LoRA as adapter `name`, all or nothing. Like diffusers, the new
        adapter becomes the only active one (weight 1); `set_adapters` stacks several."""
        label = label or repr(name)
        if name in self.parts:
            raise LoraError(f"an adapter named {name!r} is already loaded; unload it or choose "
                            "another adapter_name")
        check_applicable(state, label)
        for part in state.parts:  # the table was built from this model's config; be sure
            layer = self._layer(part.module)
            if not self._fits(part, layer):
                raise LoraError(f"cannot load LoRA {label}: {part.source} does not fit "
                                f"{part.module} {tuple(layer.weight.shape)}")
        # The first parameter's dtype, not the layer's: a layer may keep fp8 or quantized
        # weights that it upcasts per call.
        param = next(self.model.parameters())
        decoder = next(self.vae.decoder.parameters()) if state.decoder_parts else param
        self.parts[name] = [p.to(q.device, q.dtype) for p in state.parts
                            for q in [decoder if p.is_conv else param]]
        self.weights[name] = 1.0
        self.active = [name]  # as in diffusers: the newest adapter alone is active
        self._index()
        report = LoadReport(name, state.format, len(state.modules), state.mapped_keys,
                            state.total_keys, len(state.text_encoder_keys), dict(state.unmatched),
                            len(state.decoder_parts))
        if report.unmatched or report.text_encoder_skipped:
            log.warning(report.summary())
        return report

    def load(self, source: str | Path | dict[str, Tensor], adapter_name: str | None = None,
             weight_name: str | None = None, metadata: dict[str, Any] | None = None
             ) -> LoadReport:
        """A LoRA file, a folder holding one, or a state dict, in any supported format."""
        from fluxai.lora.formats import convert
        from fluxai.lora.io import read_lora_file

        name = adapter_name or f"default_{len(self.parts)}"
        if isinstance(source, dict):
            tensors, meta, label = source, dict(metadata or {}), f"{name!r}"
        else:
            path = Path(source).expanduser()
            if path.is_dir():
                path = _file_in_folder(path, weight_name)
            tensors, meta = read_lora_file(path)
            label = str(path)
        return self.add(name, convert(tensors, self.table, meta), label)

    def add_trainable(self, name: str, modules: Iterable[str], rank: int, alpha: float,
                      generator: torch.Generator | None = None) -> list[nn.Parameter]:
        """Fresh parts whose up matrices start at zero (so they start as the identity edit) on
        linear layers or decoder convolutions (LoCon: a k x k down, a 1 x 1 up); returns their
        parameters for an optimizer. Adding to an existing trainable adapter extends it."""
        if name in self.parts and not all(p.trainable for p in self.parts[name]):
            raise LoraError(f"an adapter named {name!r} is already loaded")
        parts, params = [], []
        for module in modules:
            layer = self._layer(module)
            out = layer.weight.shape[0]
            down = torch.empty(rank, *layer.weight.shape[1:])
            # PEFT's default init: Kaiming-uniform down (a = sqrt(5)), zero up.
            nn.init.kaiming_uniform_(down, a=5 ** 0.5, generator=generator)
            down = nn.Parameter(down.to(layer.weight.device))
            up_shape = (out, rank, 1, 1) if isinstance(layer, nn.Conv2d) else (out, rank)
            up = nn.Parameter(torch.zeros(up_shape, device=layer.weight.device))
            parts.append(LoraPart(module, (0, out), down, up, alpha=alpha, source=module))
            params += [down, up]
        self.parts[name] = self.parts.get(name, []) + parts
        self.weights.setdefault(name, 1.0)
        if name not in self.active:
            self.active.append(name)
        self._index()
        return params

    def state(self, name: str, fmt: str = "fluxai") -> LoraState:
        """An adapter as a detached LoraState (for saving)."""
        self._require([name])
        parts = [LoraPart(p.module, p.rows,
                          *(None if t is None else t.detach().float().cpu().clone()
                            for t in (p.down, p.up, p.dense, p.bias)), p.alpha, p.source)
                 for p in self.parts[name]]
        return LoraState(fmt, parts, total_keys=2 * len(parts))

    # -- choosing -------------------------------------------------------------------------------
    def _require(self, names: Sequence[str]) -> None:
        unknown = [n for n in names if n not in self.parts]
        if unknown:
            loaded = ", ".join(self.parts) or "none"
            raise LoraError(f"no adapter named {unknown[0]!r}; loaded adapters: {loaded}")

    def set_adapters(self, names: str | Sequence[str],
                     weights: float | Sequence[float | None] | None = None) -> None:
        names = [names] if isinstance(names, str) else list(names)
        self._require(names)
        if self.fused:
            raise LoraError("adapters are fused into the weights; call unfuse_lora() before "
                            "changing them")
        if weights is None or isinstance(weights, int | float):
            weights = [1.0 if weights is None else float(weights)] * len(names)
        weights = list(weights)
        if len(weights) != len(names):
            raise LoraError(f"{len(weights)} adapter_weights for {len(names)} adapters")
        self.active = names
        for n, w in zip(names, weights, strict=True):
            self.weights[n] = 1.0 if w is None else float(w)
        self._changed()

    @contextmanager
    def disabled(self) -> Iterator[None]:
        """The base model, for the duration: every unfused adapter off (training compares the
        adapted model with the base this way). Like set_adapters, each switch tells compiled
        code that the weights changed."""
        active = self.active
        self.active = []
        self._changed()
        try:
            yield
        finally:
            self.active = active
            self._changed()

    # -- fusing ---------------------------------------------------------------------------------
    @torch.no_grad()
    def fuse(self, scale: float = 1.0, names: Sequence[str] | None = None) -> None:
        names = [n for n in (self.active if names is None else names) if n not in self.fused]
        self._require(names)
        for name in names:
            w = self.weights[name] * scale
            for part in self.parts[name]:
                layer = self._layer(part.module)
                if part.bias is not None and layer.bias is None:
                    raise LoraError(f"{part.source} adds a bias to {part.module}, which has "
                                    "none; it can run unfused only")
            for part in self.parts[name]:
                layer = self._layer(part.module)
                if part.module not in self._originals:
                    self._originals[part.module] = (
                        layer.weight.detach().clone(),
                        None if layer.bias is None else layer.bias.detach().clone())
                lo, hi = part.rows
                delta = part.delta_weight()
                if delta is not None:
                    rows = layer.weight[lo:hi]
                    rows.copy_((rows.float() + w * delta.to(rows.device)).to(rows.dtype))
                if part.bias is not None:
                    b = layer.bias[lo:hi]
                    b.copy_((b.float() + w * part.bias.float().to(b.device)).to(b.dtype))
            self.fused[name] = w
        self._changed()

    @torch.no_grad()
    def unfuse(self) -> None:
        for module, (weight, bias) in self._originals.items():
            layer = self._layer(module)
            layer.weight.copy_(weight)
            if bias is not None:
                layer.bias.copy_(bias)
        self._originals.clear()
        self.fused.clear()
        self._changed()

    # -- removing -------------------------------------------------------------------------------
    def delete(self, names: str | Sequence[str]) -> None:
        names = [names] if isinstance(names, str) else list(names)
        self._require(names)
        if any(n in self.fused for n in names):
            self.unfuse()
        for n in names:
            del self.parts[n], self.weights[n]
        self.active = [n for n in self.active if n not in names]
        self._index()

    def unload(self) -> None:
        self.unfuse()
        self.parts.clear()
        self.weights.clear()
        self.active.clear()
        self._index()

    # -- running --------------------------------------------------------------------------------
    def _index(self) -> None:
        """Rebuild the module -> parts index and put hooks exactly on the modules in use."""
        self._by_module = {}
        for name, parts in self.parts.items():
            for i, part in enumerate(parts):
                self._by_module.setdefault(part.module, []).append((name, i))
        for module in list(self._hooks):
            if module not in self._by_module:
                self._hooks.pop(module).remove()
                self._hooked.pop(module)
        self._rehook()
        if self._by_module and self._model_hook is None:
            self._model_hook = self.model.register_forward_pre_hook(
                lambda *_: self._rehook(transformer_only=True))
        elif not self._by_module and self._model_hook is not None:
            self._model_hook.remove()
            self._model_hook = None
        self._changed()

    def _changed(self) -> None:
        # Code compiled with frozen weights would keep computing the old model.
        from fluxai.perf.compile import weights_changed

        weights_changed(self.model)

    def _rehook(self, transformer_only: bool = False) -> None:
        """Hook every adapted layer; re-hook a layer something swapped out (a quantizer that
        replaces nn.Linear modules would otherwise drop the adapter silently). Before each
        transformer call only its own layers are checked: nothing swaps decoder layers, and
        this runs on every denoising step."""
        for module in self._by_module:
            if transformer_only and module.startswith(DECODER_PREFIX):
                continue
            layer = self._layer(module)
            if self._hooked.get(module) is not layer:
                if module in self._hooks:
                    self._hooks.pop(module).remove()
                self._hooks[module] = layer.register_forward_hook(self._make_hook(module))
                self._hooked[module] = layer

    def _placed(self, name: str, i: int, x: Tensor) -> LoraPart:
        """The part on x's device and dtype; frozen parts follow the model (pipe.to(...)),
        trainable ones stay where their optimizer holds them."""
        part = self.parts[name][i]
        if not part.trainable and (part.device, part.dtype) != (x.device, x.dtype):
            part = self.parts[name][i] = part.to(x.device, x.dtype)
        return part

    def _make_hook(self, module: str):
        def hook(layer: nn.Module, inputs: tuple[Tensor, ...], output: Tensor) -> Tensor:
            x = inputs[0]
            for name, i in self._by_module.get(module, ()):
                if name not in self.active or name in self.fused or self.weights[name] == 0:
                    continue
                part = self._placed(name, i, x)
                delta = part.delta_output(x.to(part.dtype), layer if part.is_conv else None)
                w = self.weights[name]
                if w != 1.0:
                    delta = delta * w
                lo, hi = part.rows
                n = output.shape[-1]
                if not part.is_conv and (lo, hi) != (0, n):
                    delta = F.pad(delta, (lo, n - hi))
                output = output + delta.to(output.dtype)
            return output

        return hook
