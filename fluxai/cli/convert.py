"""`fluxai convert`: BFL single file <-> diffusers folder, for transformers and autoencoders."""

from __future__ import annotations

import argparse
from pathlib import Path

DTYPES = ("float32", "float16", "bfloat16", "float8_e4m3fn", "float8_e5m2")


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    p = sub.add_parser(name, help="convert a checkpoint between BFL and diffusers layouts")
    p.add_argument("src", help="checkpoint: BFL/ComfyUI .safetensors file or diffusers folder")
    p.add_argument("dst", help="output: a .safetensors file (bfl) or a new folder (diffusers)")
    p.add_argument("--to", required=True, choices=["bfl", "diffusers"], help="target layout")
    p.add_argument("--dtype", choices=DTYPES, default=None,
                   help="store the weights in this dtype (default: as in the source)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from fluxai.checkpoints import convert

    src, dst = Path(args.src).expanduser(), Path(args.dst).expanduser()
    if not src.exists():
        raise FileNotFoundError(f"no such file or folder: {src}")
    if dst.exists() and dst.resolve() == src.resolve():
        raise ValueError("destination is the source; choose another path")
    dtype = getattr(torch, args.dtype) if args.dtype else None
    kind = convert(src, dst, to=args.to, dtype=dtype)
    print(f"wrote {args.to} {kind}: {dst}")
    return 0
