"""`fluxai info`: what a checkpoint or a named preset is, without loading its weights."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    p = sub.add_parser(name, help="describe a model preset, a checkpoint file or folder")
    p.add_argument("target", help="preset name (flux-dev, flux-tiny, ...) or path")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(run=run)


def describe_target(target: str) -> dict[str, Any]:
    from fluxai.config import PRESETS
    from fluxai.model.transformer import count_parameters
    from fluxai.registry import WEIGHTS_DIR, known_models, shipped_models

    if target in shipped_models():
        from fluxai.checkpoints import describe

        return {"model": target, **describe(WEIGHTS_DIR / target)}
    path = Path(target).expanduser()
    if target in PRESETS and not path.exists():
        preset = PRESETS[target]
        return {
            "preset": target,
            "variant": "dev (guidance-distilled)" if preset.transformer.guidance_embed
            else "schnell (no guidance)",
            "parameters": count_parameters(preset.transformer),  # on the meta device
            "text_encoder": preset.text_encoder,
            "weights": preset.hub_id or "random (a test preset)",
            "transformer": preset.transformer.to_dict(),
            "autoencoder": preset.autoencoder.to_dict(),
        }
    if not path.exists():
        raise FileNotFoundError(f"no such model, file or folder: {target} "
                                f"(models: {', '.join(known_models())})")
    from fluxai.checkpoints import describe

    return describe(path)


def _print(info: dict[str, Any], indent: str = "") -> None:
    for key, value in info.items():
        if isinstance(value, dict):
            print(f"{indent}{key}:")
            _print(value, indent + "  ")
        elif key == "parameters":
            print(f"{indent}{key}: {value:,}")
        else:
            print(f"{indent}{key}: {value}")


def run(args: argparse.Namespace) -> int:
    info = describe_target(args.target)
    if args.json:
        print(json.dumps(info, indent=2, default=str))
    else:
        _print(info)
    return 0
