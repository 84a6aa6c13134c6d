"""`fluxai`: one entry point, one module per subcommand; errors are one line, never a traceback."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from fluxai.cli import bench, convert, dataset, evaluate, generate, info, serve, train, worker
from fluxai.cli import lora as lora_cli
from fluxai.cli import train_lora as train_lora_cli

COMMANDS = {
    "generate": generate,
    "info": info,
    "convert": convert,
    "dataset": dataset,
    "eval": evaluate,
    "train": train,
    "serve": serve,
    "worker": worker,
    "lora": lora_cli,
    "train-lora": train_lora_cli,
    "bench": bench,
}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line and exit 2, like every other failure
        print(f"fluxai: error: {message}", file=sys.stderr)
        sys.exit(2)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="fluxai", description="FLUX.1 in plain PyTorch.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    for name, module in COMMANDS.items():
        module.add_parser(sub, name)
    return parser


def quiet_libraries() -> None:
    """Keep a command's output to its own progress and results. transformers imports torchao
    (when installed) as it loads a text encoder, and torchao logs every optional kernel its
    wheel lacks for this machine, then torch warns about torchao's enums: none of it is the
    user's concern, and errors still come through."""
    for name in ("torchao", "torch.utils._pytree"):
        logging.getLogger(name).setLevel(logging.ERROR)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    quiet_libraries()
    try:
        return int(args.run(args) or 0)
    except KeyboardInterrupt:
        print("fluxai: interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # the user sees what went wrong, not where
        if os.environ.get("FLUXAI_DEBUG"):
            raise
        message = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if isinstance(e, KeyError):
            message = message.strip("'\"")
        print(f"fluxai: error: {message}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
