"""`fluxai serve`: the HTTP API and web page, with an in-process worker or Celery workers."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from fluxai.registry import DEFAULT_MODEL


def add_engine_args(p: argparse.ArgumentParser) -> None:
    """Flags the API and the workers share (they must agree on model, broker and limits)."""
    p.add_argument("--model", default=DEFAULT_MODEL,
                   help=f"model name or folder to serve (default {DEFAULT_MODEL})")
    p.add_argument("--broker", default=None,
                   help="redis://host:port/db: run jobs on `fluxai worker` processes and keep "
                        "job state in Redis (default: in-process worker, SQLite state)")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: best)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--previews", type=int, default=4, help="low-res previews per job (0: none)")
    p.add_argument("--moderation-hook", default=None, metavar="MODULE:FUNCTION",
                   help="function(image, params) -> True to withhold an image (job Moderated)")
    p.add_argument("--lora-dir", default=None,
                   help="folder of LoRA .safetensors files requests may name (by file stem)")
    p.add_argument("--visibility-timeout", type=int, default=300,
                   help="seconds after which a dead worker's job is redelivered (default 300)")
    p.add_argument("--stale-after", type=float, default=30.0,
                   help="seconds without progress before a running job is taken over")


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    p = sub.add_parser(name, help="serve the image API and web page")
    add_engine_args(p)
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.add_argument("--data-dir", default="fluxai-serve",
                   help="local mode: SQLite job state and images (default ./fluxai-serve)")
    p.add_argument("--api-key", action="append", default=None,
                   help="accepted API key (repeatable; also FLUXAI_API_KEYS=a,b)")
    p.add_argument("--rate-limit", type=float, default=0.0,
                   help="generation requests per minute per key (0: unlimited)")
    p.add_argument("--rate-burst", type=int, default=10, help="requests allowed at once")
    p.add_argument("--cors-origin", action="append", default=[],
                   help="allowed browser origin (repeatable; '*' for any)")
    p.add_argument("--blocked-terms", default=None, metavar="FILE",
                   help="prompt filter: one blocked word or phrase per line")
    p.add_argument("--max-side", type=int, default=1024, help="largest width/height")
    p.add_argument("--max-n", type=int, default=4, help="most images per request")
    p.add_argument("--max-steps", type=int, default=50, help="most steps per request")
    p.add_argument("--max-batch", type=int, default=8,
                   help="images per forward pass in the in-process worker (1: no batching)")
    p.add_argument("--batch-wait-ms", type=float, default=20.0,
                   help="how long a job waits for others to share its pass")
    p.set_defaults(run=run)


def config_from_args(args: argparse.Namespace):  # -> ServeConfig
    from fluxai.serve.config import Limits, ServeConfig, keys_from_env, load_hook
    from fluxai.serve.policy import read_terms

    if args.broker and not args.broker.startswith(("redis://", "rediss://", "unix://")):
        raise ValueError(f"--broker {args.broker!r} is not supported: use redis://host:port/db")
    for flag in ("threads", "visibility_timeout"):
        value = getattr(args, flag, None)
        if value is not None and value < 1:
            raise ValueError(f"--{flag.replace('_', '-')} must be at least 1, got {value}")
    cfg = ServeConfig(
        model=args.model, broker=args.broker, device=args.device, threads=args.threads,
        previews=max(0, args.previews), visibility_timeout_s=args.visibility_timeout,
        stale_after_s=args.stale_after,
        lora_dir=Path(args.lora_dir) if args.lora_dir else None,
        moderation=load_hook(args.moderation_hook) if args.moderation_hook else None,
    )
    if not hasattr(args, "port"):
        return cfg
    for flag in ("max_side", "max_n", "max_steps", "max_batch"):
        if getattr(args, flag) < 1:
            raise ValueError(f"--{flag.replace('_', '-')} must be at least 1, "
                             f"got {getattr(args, flag)}")
    if args.max_side % 16:
        raise ValueError(f"--max-side must be a multiple of 16, got {args.max_side}")
    limits = Limits(max_side=args.max_side, max_n=args.max_n, max_steps=args.max_steps,
                    max_pixels=args.max_side * args.max_side)
    return replace(
        cfg, host=args.host, port=args.port, data_dir=Path(args.data_dir),
        api_keys=keys_from_env(args.api_key), rate_limit=args.rate_limit,
        rate_burst=args.rate_burst, cors_origins=tuple(args.cors_origin),
        blocked_terms=tuple(read_terms(Path(args.blocked_terms))) if args.blocked_terms else (),
        limits=limits, max_batch=args.max_batch, batch_wait_ms=args.batch_wait_ms,
    )


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(args)
    import uvicorn

    from fluxai.serve.app import create_app
    from fluxai.serve.jobs import open_store

    store = open_store(cfg.broker, cfg.data_dir, cfg.file_ttl_s)
    engine = None
    if not cfg.distributed:  # load before listening: a bad model is a one-line error here
        from fluxai.serve.engine import Engine

        engine = Engine(cfg, store)
    app = create_app(cfg, store, engine)
    where = f"broker {cfg.broker}" if cfg.distributed else f"in-process worker, {cfg.data_dir}"
    print(f"fluxai serve: {cfg.model} on http://{cfg.host}:{cfg.port} ({where})", flush=True)
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="warning")
    return 0
