"""Finding out what a path holds and presenting it in one layout: BFL names, lazily read.

A path may be a BFL single file, the same with ComfyUI's prefixes, a diffusers model folder
(config.json + one or several safetensors shards with an index), a diffusers pipeline folder, or
our own model folder. Whatever it is, `open_checkpoint` returns a `Checkpoint` whose keys are
BFL parameter names and whose tensors are built on request from the memory-mapped files.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from fluxai.checkpoints.diffusers_keys import AUTOENCODER_KEYS, TRANSFORMER_KEYS, Part
from fluxai.checkpoints.errors import CheckpointError
from fluxai.checkpoints.safetensors_io import FP8_DTYPES, SafetensorsFile

TRANSFORMER, AUTOENCODER = "transformer", "autoencoder"
_PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl")

# (kind, layout, prefix, a tensor every such file has)
_SIGNATURES = [
    (TRANSFORMER, "bfl", "", "img_in.weight"),
    (TRANSFORMER, "comfyui", "model.diffusion_model.", "model.diffusion_model.img_in.weight"),
    (TRANSFORMER, "diffusers", "", "x_embedder.weight"),
    (AUTOENCODER, "bfl", "", "encoder.down.0.block.0.conv1.weight"),
    (AUTOENCODER, "comfyui", "first_stage_model.",
     "first_stage_model.encoder.down.0.block.0.conv1.weight"),
    (AUTOENCODER, "comfyui", "vae.", "vae.encoder.down.0.block.0.conv1.weight"),
    (AUTOENCODER, "diffusers", "", "encoder.down_blocks.0.resnets.0.conv1.weight"),
]
_DIFFUSERS_CLASSES = {"FluxTransformer2DModel": TRANSFORMER, "AutoencoderKL": AUTOENCODER}


@dataclass
class Source:
    """Where the bytes of one BFL tensor are: one or more (file, name) pieces stacked on dim 0."""

    pieces: list[tuple[SafetensorsFile, str]]
    swap: bool = False  # exchange the two halves (diffusers' final norm emits scale, shift)
    conv1x1: bool = False  # a (C, C) linear weight stands for a (C, C, 1, 1) convolution
    origin: str = ""  # the first piece's name in the file, for error messages

    @property
    def dtype(self) -> torch.dtype:
        f, name = self.pieces[0]
        return f.entries[name].dtype

    @property
    def shape(self) -> tuple[int, ...]:
        shapes = [f.entries[n].shape for f, n in self.pieces]
        rows = sum(s[0] for s in shapes) if shapes[0] else None
        shape = shapes[0] if rows is None else (rows, *shapes[0][1:])
        if self.conv1x1 and len(shape) == 2:
            shape = (*shape, 1, 1)
        return shape


@dataclass
class Checkpoint:
    path: Path
    kind: str
    layout: str
    sources: dict[str, Source]
    metadata: dict[str, str] = field(default_factory=dict)
    diffusers_config: dict[str, Any] | None = None

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {k: s.shape for k, s in self.sources.items()}

    def dtypes(self) -> dict[str, torch.dtype]:
        return {k: s.dtype for k, s in self.sources.items()}

    def has_fp8(self) -> bool:
        return any(s.dtype in FP8_DTYPES for s in self.sources.values())

    def describe_key(self, key: str) -> str:
        origin = self.sources[key].origin if key in self.sources else ""
        return key if not origin or origin == key else f"{key} (in the file: {origin})"

    def tensor(self, key: str, dtype: torch.dtype | None = None) -> Tensor:
        """The tensor, in `dtype` if given: a zero-copy view when nothing has to change."""
        src = self.sources[key]
        parts = [f.tensor(name) for f, name in src.pieces]
        if len(parts) == 1:
            t = parts[0]
        elif parts[0].element_size() == 1:  # cat is not implemented for fp8: stack the bytes
            t = torch.cat([p.view(torch.uint8) for p in parts]).view(parts[0].dtype)
        else:
            t = torch.cat(parts)
        if src.swap:
            a, b = t.chunk(2)
            t = torch.cat([b, a]) if t.element_size() > 1 else \
                torch.cat([b.view(torch.uint8), a.view(torch.uint8)]).view(t.dtype)
        if src.conv1x1 and t.ndim == 2:
            t = t[:, :, None, None]
        copied = len(parts) > 1 or src.swap
        if dtype is not None and t.dtype != dtype:
            t = t.to(dtype)
            copied = True
        if copied:  # the mapped bytes are no longer needed: give their pages back
            for f, name in src.pieces:
                f.release(name)
        return t


def _a(kind: str | None) -> str:
    return "an autoencoder" if kind == AUTOENCODER else f"a {kind}"


def _fail(path: Path, what: str) -> CheckpointError:
    return CheckpointError(f"{path}: {what}")


def open_checkpoint(path: str | Path, kind: str | None = None) -> Checkpoint:
    """Detect the layout at `path` and map it onto BFL names; `kind` picks the transformer or
    the autoencoder where a path holds both (pipeline folders, ComfyUI all-in-one files)."""
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.is_dir():
        return _open_folder(path, kind)
    if path.suffix.lower() in _PICKLE_SUFFIXES:
        raise _fail(path, "pickle checkpoints are not read (loading them can run code); "
                          "use a .safetensors file")
    return _open_files(path, [SafetensorsFile(path)], kind, None)


def _open_folder(path: Path, kind: str | None) -> Checkpoint:
    want = kind or TRANSFORMER
    if (path / "model_index.json").is_file():  # a diffusers pipeline: pick the part
        return _open_folder(path / ("vae" if want == AUTOENCODER else "transformer"), kind)
    ours = path / ("ae.safetensors" if want == AUTOENCODER else "transformer.safetensors")
    if ours.is_file():
        return open_checkpoint(ours, kind)
    config_file = path / "config.json"
    index = sorted(path.glob("*.safetensors.index.json"))
    weights = sorted(path.glob("*.safetensors"))
    if not config_file.is_file() or not (index or weights):
        raise _fail(path, "no checkpoint here (expected a .safetensors file, a diffusers folder "
                          "with config.json and safetensors weights, or a model folder)")
    try:
        config = json.loads(config_file.read_text())
    except json.JSONDecodeError as e:
        raise _fail(config_file, f"not valid JSON ({e.msg} at line {e.lineno})") from None
    found = _DIFFUSERS_CLASSES.get(config.get("_class_name", ""))
    if found is None:
        raise _fail(path, f"a diffusers {config.get('_class_name', 'model')} folder, not a Flux "
                          "transformer (FluxTransformer2DModel) or autoencoder (AutoencoderKL)")
    if kind is not None and found != kind:
        raise _fail(path, f"holds a Flux {found}, not {_a(kind)}")
    if index:
        try:
            weight_map: dict[str, str] = json.loads(index[0].read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError):
            raise _fail(index[0], "not a safetensors index (no weight_map)") from None
        shard_names = list(dict.fromkeys(weight_map.values()))
        for name in shard_names:
            if not (path / name).is_file():
                raise _fail(path, f"shard {name} named by {index[0].name} is missing "
                                  f"(first tensor in it: "
                                  f"{next(k for k, v in weight_map.items() if v == name)})")
        files = [SafetensorsFile(path / name) for name in shard_names]
        for f in files:  # the index and the shards must agree, tensor by tensor
            for key in f.names():
                if weight_map.get(key) != f.path.name:
                    raise _fail(f.path, f"tensor {key} is not listed for this shard in "
                                        f"{index[0].name}")
        listed = {k for f in files for k in f.names()}
        missing = [k for k in weight_map if k not in listed]
        if missing:
            raise _fail(path, f"tensor {missing[0]} is listed in {index[0].name} but in no shard")
    else:
        files = [SafetensorsFile(w) for w in weights]
    ckpt = _open_files(path, files, found, config)
    if ckpt.layout != "diffusers":
        raise _fail(path, f"config.json names a diffusers model but the weights use "
                          f"{ckpt.layout} names")
    return ckpt


def _detect(keys: set[str], kind: str | None) -> tuple[str, str, str] | None:
    for sig_kind, layout, prefix, marker in _SIGNATURES:
        if (kind is None or kind == sig_kind) and marker in keys:
            return sig_kind, layout, prefix
    return None


def _open_files(path: Path, files: list[SafetensorsFile], kind: str | None,
                config: dict[str, Any] | None) -> Checkpoint:
    keys = {k for f in files for k in f.names()}
    found = _detect(keys, kind)
    if found is None:
        other = _detect(keys, None)
        if other is not None:
            raise _fail(path, f"a Flux {other[0]} checkpoint, not {_a(kind)}")
        first = next(iter(files[0].names()), None)
        what = kind or "transformer or autoencoder"
        raise _fail(path, f"not a Flux {what} checkpoint "
                          + (f"(first tensor: {first})" if first else "(no tensors)"))
    found_kind, layout, prefix = found
    metadata = files[0].metadata
    if layout == "diffusers":
        sources = _diffusers_sources(path, files, found_kind)
    else:
        sources = {name[len(prefix):]: Source([(f, name)], origin=name)
                   for f in files for name in f.names() if name.startswith(prefix)}
    return Checkpoint(path, found_kind, layout, sources, metadata, config)


def _diffusers_sources(path: Path, files: list[SafetensorsFile], kind: str
                       ) -> dict[str, Source]:
    keymap = TRANSFORMER_KEYS if kind == TRANSFORMER else AUTOENCODER_KEYS
    where = {name: f for f in files for name in f.names()}
    levels = len({k.split(".")[2] for k in where if k.startswith("decoder.up_blocks.")})
    parts: dict[str, Part] = {}
    for name in where:
        hit = keymap.from_diffusers(name, levels)
        if hit is None:
            raise _fail(path, f"unexpected tensor {name} for a diffusers Flux {kind}")
        part, _ = hit
        parts.setdefault(part.bfl, part)
    sources: dict[str, Source] = {}
    for key, part in parts.items():
        absent = [s for s in part.sources if s not in where]
        if absent:
            raise _fail(path, f"missing tensor {absent[0]} (needed for {key})")
        sources[key] = Source([(where[s], s) for s in part.sources], part.swap, part.conv1x1,
                              origin=part.sources[0])
    return sources
