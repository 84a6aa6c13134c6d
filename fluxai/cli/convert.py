"""`fluxai convert`: BFL single file <-> diffusers folder, for transformers and autoencoders."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    p = sub.add_parser(name, help="convert a checkpoint between BFL and diffusers layouts")
    p.add_argument("src", help="checkpoint file or folder")
    p.add_argument("dst", help="output file (bfl) or folder (diffusers)")
    p.add_argument("--to", required=True, choices=["bfl", "diffusers"], help="target layout")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from fluxai.checkpoints import convert

    src, dst = Path(args.src), Path(args.dst)
    if not src.exists():
        raise FileNotFoundError(f"no such file or folder: {src}")
    if dst.exists() and dst.resolve() == src.resolve():
        raise ValueError("destination is the source; choose another path")
    convert(src, dst, to=args.to)
    print(dst)
    return 0
