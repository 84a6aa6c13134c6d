"""`fluxai eval shapes`: GenEval-style prompt adherence of a model, judged by the contract."""

from __future__ import annotations

import argparse

from fluxai.cli.perf_flags import add_perf_arguments


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    p = sub.add_parser(name, help="evaluate a model")
    kinds = p.add_subparsers(dest="benchmark", required=True, parser_class=type(p))
    s = kinds.add_parser("shapes", help="Shapes World accuracy per kind")
    s.add_argument("--model", default=None, help="model name or folder (default flux-tiny)")
    s.add_argument("--prompts", default=None,
                   help="file of prompts: plain lines, or JSONL {\"prompt\", \"spec\"} "
                        "(default: the held-out prompt set)")
    s.add_argument("--seeds", type=int, default=2, help="images per prompt")
    s.add_argument("--out", default="eval-shapes", help="directory for the report and sheet")
    s.add_argument("--steps", type=int, default=None)
    s.add_argument("--guidance", type=float, default=None)
    s.add_argument("--limit", type=int, default=None, help="use only the first N prompts")
    s.add_argument("--batch-size", type=int, default=8, help="images generated per call")
    s.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: best)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.add_argument("--lora", action="append", metavar="FILE[:SCALE]",
                   help="evaluate with a LoRA applied, optionally scaled; repeatable")
    add_perf_arguments(s)  # accuracy with a speed/memory shortcut (docs/benchmarks.md)
    s.set_defaults(run=run)

    b = kinds.add_parser("binding", help="does the model put each named shape in its place? "
                                          "(flow-loss gap when a caption's shapes are exchanged)")
    b.add_argument("--model", default=None, help="model name or folder (default flux-tiny)")
    b.add_argument("--scenes", type=int, default=64, help="rendered scenes per arrangement")
    b.add_argument("--t", type=float, nargs="+", default=[0.6, 0.8],
                   help="noise levels to measure at, in (0, 1]")
    b.add_argument("--seed", type=int, default=0)
    b.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: best)")
    b.add_argument("--lora", action="append", metavar="FILE[:SCALE]",
                   help="measure with a LoRA applied, optionally scaled; repeatable")
    b.set_defaults(run=run_binding)


def run_binding(args: argparse.Namespace) -> int:
    from fluxai.shapes.binding import run_binding

    return run_binding(args)


def run(args: argparse.Namespace) -> int:
    from fluxai.shapes.evaluate import run_eval

    return run_eval(args)
