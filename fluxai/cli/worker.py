"""`fluxai worker`: a Celery worker that runs `fluxai serve --broker` jobs, one at a time."""

from __future__ import annotations

import argparse

from fluxai.cli.serve import add_engine_args, config_from_args


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    p = sub.add_parser(name, help="run generation jobs from a Redis broker (fluxai serve "
                                  "--broker)")
    add_engine_args(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    if not args.broker:
        raise ValueError("fluxai worker needs --broker redis://host:port/db (the same as "
                         "fluxai serve --broker)")
    cfg = config_from_args(args)
    from fluxai.serve.celery_app import run_worker

    print(f"fluxai worker: {cfg.model} from {cfg.broker}", flush=True)
    run_worker(cfg)
    return 0
