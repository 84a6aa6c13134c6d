"""`fluxai dataset shapes`: write Shapes World images and their captions with ground truth."""

from __future__ import annotations

import argparse
from pathlib import Path

from fluxai.shapes.scenes import LAYOUTS


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    p = sub.add_parser(name, help="write a synthetic dataset")
    kinds = p.add_subparsers(dest="dataset", required=True, parser_class=type(p))
    s = kinds.add_parser("shapes", help="Shapes World scenes (see docs/shapes-world.md)")
    s.add_argument("--out", required=True, help="output directory")
    s.add_argument("--count", type=int, required=True, help="number of images")
    s.add_argument("--size", type=int, default=None, help="canvas side (multiple of 16, 64-512)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--layout", choices=LAYOUTS, default="free",
                   help="where objects the caption does not place go: anywhere at any size "
                        "(free), or the fixed cells flux-tiny is trained on (canonical)")
    s.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from fluxai.shapes import WORLD, write_dataset

    size = args.size or WORLD.default_size
    if size % 16 or not 64 <= size <= 512:
        raise ValueError(f"--size must be a multiple of 16 from 64 to 512, got {size}")
    if args.count < 1:
        raise ValueError(f"--count must be positive, got {args.count}")
    write_dataset(Path(args.out), args.count, size=size, seed=args.seed, layout=args.layout)
    print(args.out)
    return 0
