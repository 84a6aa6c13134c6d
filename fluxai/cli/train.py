"""`fluxai train`: train a Shapes World model from a TOML/YAML recipe, resuming if interrupted."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    p = sub.add_parser(name, help="train a model (autoencoder, then flow transformer)")
    p.add_argument("--config", required=True, help="recipe, e.g. configs/flux-tiny.toml")
    p.add_argument("--stage", choices=["text", "ae", "all", "export"], default="all",
                   help="stop after the caption cache, after the autoencoder, run every "
                        "stage (default), or export the flow checkpoint as it stands "
                        "(decoder fine-tuning included) without training further")
    p.add_argument("--out", default=None, help="run directory (overrides output.dir)")
    p.add_argument("--steps", type=int, default=None, help="override flow_train.steps")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override one recipe key, e.g. --set flow_train.exchange_weight=0.3 "
                        "(TOML value syntax; repeatable)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from fluxai.train.config import load_train_config
    from fluxai.train.run import run_training

    cfg = load_train_config(args.config, args.overrides)
    if args.out:
        cfg.output.dir = args.out
    if args.steps is not None:
        if args.steps < 1:
            raise ValueError(f"--steps must be positive, got {args.steps}")
        cfg.flow_train.steps = args.steps
    stages = {"text": ("text",), "ae": ("ae",), "all": ("ae", "flow"),
              "export": ("ae", "export")}[args.stage]
    run_dir = run_training(cfg, stages=stages)
    print(run_dir)
    return 0
