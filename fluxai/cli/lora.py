"""`fluxai lora info|convert`: what a LoRA file is and how it maps; kohya <-> diffusers."""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path
from typing import Any

DEFAULT_BASE = "flux-dev"


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    p = sub.add_parser(name, help="inspect or convert LoRA files")
    lsub = p.add_subparsers(dest="lora_command", required=True, parser_class=type(p))
    info = lsub.add_parser("info", help="detected format, rank, alpha, targeted layers, key map")
    info.add_argument("file", help="LoRA file (.safetensors)")
    info.add_argument("--model", default=None,
                      help=f"base model whose layers the keys are matched against (default: the "
                           f"one a fluxai-trained file names, else {DEFAULT_BASE}; shapes only, "
                           "no weights are loaded)")
    info.set_defaults(run=run_info)
    conv = lsub.add_parser("convert", help="rewrite a LoRA as diffusers/PEFT or kohya")
    conv.add_argument("src", help="LoRA file in any supported format")
    conv.add_argument("dst", help="output .safetensors file (must not exist)")
    conv.add_argument("--to", required=True, choices=["diffusers", "kohya"],
                      help="output layout")
    conv.add_argument("--model", default=None,
                      help=f"base model the LoRA is for (default: the one a fluxai-trained "
                           f"file names, else {DEFAULT_BASE})")
    conv.set_defaults(run=run_convert)


def parse_lora_arg(text: str) -> tuple[Path, float]:
    """'FILE' or 'FILE:SCALE' -> (path, scale); a Windows drive colon is not a scale."""
    path, scale = text, 1.0
    m = re.fullmatch(r"(.+):([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)", text)
    if m:
        path, scale = m.group(1), float(m.group(2))
    elif ":" in text and not Path(text).exists() and not re.match(r"^[A-Za-z]:[\\/]", text):
        raise ValueError(f"--lora {text!r}: the part after ':' must be a number (FILE:SCALE)")
    return Path(path).expanduser(), scale


def resolve_loras(flags: list[str] | None, stored: list[dict[str, Any]] | None
                  ) -> list[tuple[Path, float]]:
    """--lora flags, else the LoRAs a replayed PNG records (which must still be the same files)."""
    if flags:
        loras = [parse_lora_arg(text) for text in flags]
    else:
        loras = []
        for entry in stored or []:
            path = Path(entry["path"])
            if entry.get("sha256") and path.is_file() and _digest(path) != entry["sha256"]:
                raise ValueError(f"LoRA {path} has changed since the image was made; replay "
                                 "needs the same file")
            loras.append((path, float(entry["scale"])))
    for path, _ in loras:
        if not path.is_file():
            raise FileNotFoundError(f"LoRA file not found: {path}")
    return loras


def _digest(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def apply_loras(pipe: Any, loras: list[tuple[Path, float]], quiet: bool = False
                ) -> list[dict[str, Any]]:
    """Load each LoRA as its own adapter with its scale; returns what a PNG should record."""
    import sys

    names, scales, records = [], [], []
    for i, (path, scale) in enumerate(loras):
        report = pipe.load_lora_weights(str(path), adapter_name=f"lora{i}")
        if not quiet and not (report.unmatched or report.text_encoder_skipped):
            print(report.summary(), file=sys.stderr)  # else the loader has warned already
        names.append(f"lora{i}")
        scales.append(scale)
        records.append({"path": str(path.resolve()), "scale": scale, "sha256": _digest(path)})
    if names:
        pipe.set_adapters(names, scales)
    return records


def base_configs(model: str) -> tuple[Any, Any]:
    """A model's FluxConfig and (where known) AutoEncoderConfig, from its name, folder or
    file, reading shapes only."""
    from fluxai.checkpoints import open_checkpoint
    from fluxai.checkpoints.io import infer_config
    from fluxai.config import PRESETS
    from fluxai.registry import WEIGHTS_DIR, known_models, shipped_models

    path = Path(model).expanduser()
    if model in shipped_models():
        path = WEIGHTS_DIR / model
    elif model in PRESETS and not path.exists():
        return PRESETS[model].transformer, PRESETS[model].autoencoder
    if not path.exists():
        raise ValueError(f"unknown model {model!r}; known: {', '.join(known_models())}, "
                         "or a model folder or checkpoint")
    ae_path = None
    if path.is_dir() and (path / "transformer.safetensors").is_file():
        path, ae_path = path / "transformer.safetensors", path / "ae.safetensors"
    elif path.is_dir() and (path / "transformer").is_dir():
        path, ae_path = path / "transformer", path / "vae"
    ae = infer_config(open_checkpoint(ae_path)) if ae_path and ae_path.exists() else None
    return infer_config(open_checkpoint(path)), ae


def _state(file: str, model: str | None) -> tuple[Any, Any, str]:
    """The file converted against `model`'s layers (None: the base model a fluxai-trained file
    names, else the default), the layer table, and the model's name."""
    import json

    from fluxai.lora import TargetTable, convert, read_lora_file

    tensors, meta = read_lora_file(file)
    if model is None:
        trained = json.loads(meta.get("fluxai_train", "{}"))
        model = trained.get("base_model") or DEFAULT_BASE
    table = TargetTable(*base_configs(model))
    return convert(tensors, table, meta), table, model


def _pattern(module: str) -> str:
    return re.sub(r"\.\d+\.", ".*.", module)


def run_info(args: argparse.Namespace) -> int:
    state, table, model = _state(args.file, args.model)
    print(f"file:      {args.file}")
    print(f"format:    {state.format}")
    ranks = state.ranks()
    alphas = state.alphas()
    print(f"rank:      {', '.join(map(str, ranks)) or '-'}")
    print(f"alpha:     {', '.join(f'{a:g}' for a in alphas) or '- (scale 1)'}")
    print(f"keys:      {state.mapped_keys}/{state.total_keys} map onto {model}")
    if state.text_encoder_keys:
        print(f"skipped:   {len(state.text_encoder_keys)} text-encoder keys (fluxai applies "
              "LoRAs to the transformer only)")
    for label, bad in (("unmatched", state.unmatched), ("misfit", state.misfits)):
        if bad:
            key, why = next(iter(bad.items()))
            print(f"{label}: {len(bad):>4} keys, e.g. {key}: {why}")
    if state.misfits and not state.parts:
        print(f"hint:      no layer of {model} fits; name the base model with --model")
    if state.replacements:
        print(f"replaces:  {len(state.replacements)} norm parameters (control LoRA)")
    decoder = state.decoder_parts
    if decoder:
        alphas = state.alphas(decoder=True)
        print(f"decoder:   {len(decoder)} convolutions of the autoencoder's decoder, rank "
              f"{', '.join(map(str, state.ranks(decoder=True)))}, alpha "
              f"{', '.join(f'{a:g}' for a in alphas) or '- (scale 1)'}")
    if "fluxai_train" in state.metadata:
        import json

        t = json.loads(state.metadata["fluxai_train"])
        print(f"trained:   by fluxai on {t.get('base_model')} with {t.get('data')}, "
              f"{t.get('steps')} steps, final loss {t.get('final_loss', float('nan')):.4f}"
              + (f"; then {t['decoder_steps']} decoder steps, final loss "
                 f"{t.get('decoder_final_loss', float('nan')):.4f}" if t.get("decoder_steps")
                 else ""))
        if t.get("stand_in"):
            print(f"stand-in:  the {t['stand_in']} (latent contrast {t['latent_contrast']:g}, "
                  f"twins {t['twin_fraction']:g})")
    counts: Counter[tuple[str, tuple[int, int] | None]] = Counter()
    for part in state.transformer_parts:
        whole = part.rows == (0, table.modules[part.module][1])
        counts[_pattern(part.module), None if whole else part.rows] += 1
    print(f"targets:   {len(state.modules) - len(decoder)} transformer layers")
    for (pattern, rows), n in sorted(counts.items(), key=lambda kv: (kv[0][0], kv[0][1] or ())):
        print(f"  {n:>3} x {pattern}" + (f" rows {rows[0]}:{rows[1]}" if rows else ""))
    return 0


def run_convert(args: argparse.Namespace) -> int:
    from fluxai.lora import save_lora

    dst = Path(args.dst)
    if dst.exists():
        raise ValueError(f"{dst} already exists; choose a new file name")
    if dst.suffix != ".safetensors":
        raise ValueError(f"{dst}: the output is a .safetensors file; name it *.safetensors")
    state, table, model = _state(args.src, args.model)
    if state.misfits or state.unmatched or not state.parts:
        from fluxai.lora.adapters import check_applicable

        check_applicable(state, args.src)  # the same one-line refusal loading would give
        bad = {**state.unmatched, **state.misfits}
        key, why = next(iter(bad.items()))
        raise ValueError(f"{len(bad)} of {state.total_keys} keys of {args.src} do not map "
                         f"onto {model} (e.g. {key}: {why}); nothing written")
    save_lora(state, dst, table, args.to)
    skipped = (f"; {len(state.text_encoder_keys)} text-encoder keys not carried over"
               if state.text_encoder_keys else "")
    print(f"{dst}: {state.format} -> {args.to}, {len(state.parts)} layers{skipped}")
    return 0
