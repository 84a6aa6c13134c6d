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
    from fluxai.registry import WEIGHTS_DIR, shipped_models

    if target in shipped_models():
        target = str(WEIGHTS_DIR / target / "transformer.safetensors")
    elif target in PRESETS and not Path(target).exists():
        preset = PRESETS[target]
        return {
            "preset": target,
            "transformer": preset.transformer.to_dict(),
            "parameters": count_parameters(preset.transformer),
            "text_encoder": preset.text_encoder,
        }
    from fluxai.checkpoints import describe

    path = Path(target)
    if not path.exists():
        raise FileNotFoundError(f"no such preset, file or folder: {target}")
    return describe(path)


def run(args: argparse.Namespace) -> int:
    info = describe_target(args.target)
    if args.json:
        print(json.dumps(info, indent=2, default=str))
        return 0
    for key, value in info.items():
        if isinstance(value, dict):
            print(f"{key}:")
            for k, v in value.items():
                print(f"  {k}: {v}")
        elif key == "parameters":
            print(f"{key}: {value:,}")
        else:
            print(f"{key}: {value}")
    return 0
