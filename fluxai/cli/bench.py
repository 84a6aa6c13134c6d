"""`fluxai bench`: our pipeline against diffusers' FluxPipeline on identical weights."""

from __future__ import annotations

import argparse
import sys

from fluxai.cli.perf_flags import add_perf_arguments


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    p = sub.add_parser(name, help="time fluxai against diffusers on identical weights")
    p.add_argument("--model", default="flux-test-dev",
                   help="model name, preset (random weights) or folder (default flux-test-dev)")
    p.add_argument("--size", default=None, help="WxH (default: the model's)")
    p.add_argument("--steps", type=int, default=None, help="Euler steps (default: the model's)")
    p.add_argument("--batch", type=int, default=1, help="images per call")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    p.add_argument("--dtype", default=None, choices=["float32", "bfloat16", "float16"],
                   help="weights and activations (default: float32 on CPU, bfloat16 on CUDA)")
    p.add_argument("--repeats", type=int, default=3, help="timed calls per pipeline")
    p.add_argument("--warmup", type=int, default=1, help="untimed calls per pipeline first")
    p.add_argument("--threads", type=int, default=None,
                   help="CPU threads for torch (default: torch's choice)")
    p.add_argument("--clock", default="wall", choices=["wall", "cpu"],
                   help="wall: elapsed time; cpu: process CPU time, for machines shared with "
                        "other work (use with --threads 1)")
    p.add_argument("--quality", action="store_true",
                   help="instead of timing: PSNR/SSIM of every shortcut against full precision")
    p.add_argument("--seeds", type=int, default=4, help="images per shortcut with --quality")
    add_perf_arguments(p, memory=False)
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from fluxai.cli.generate import parse_size
    from fluxai.perf.bench import BenchSettings, run_bench
    from fluxai.perf.options import check_options
    from fluxai.sampling import check_size

    try:
        import diffusers  # noqa: F401
    except ImportError:
        raise ImportError("fluxai bench compares against diffusers: pip install diffusers") \
            from None
    width = height = None
    if args.size:
        width, height = parse_size(args.size)
        check_size(width, height)
    if args.steps is not None and args.steps < 1:
        raise ValueError(f"--steps must be a positive integer, got {args.steps}")
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available here; use --device cpu")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device must be cpu or cuda[:N], got {args.device}")
    if args.threads is not None:
        if args.threads < 1:
            raise ValueError(f"--threads must be a positive integer, got {args.threads}")
        torch.set_num_threads(args.threads)
    dtype_name = args.dtype or ("bfloat16" if device.type == "cuda" else "float32")
    settings = BenchSettings(
        model=args.model, width=width, height=height, steps=args.steps, batch=args.batch,
        device=str(device), dtype=getattr(torch, dtype_name), warmup=args.warmup,
        repeats=args.repeats, clock=args.clock, compile=args.compile, quantize=args.quantize,
        cache_threshold=args.cache_threshold)
    from fluxai.perf.options import PerfOptions

    check_options(PerfOptions(args.quantize, None, args.cache_threshold), device)
    if args.quality:
        return run_quality(args, settings)
    report = run_bench(settings, lambda m: print(m, file=sys.stderr, flush=True))
    print(report.format())
    return 0


def quality_shortcuts(device: str) -> dict:
    """Every shortcut that can run on `device`, by the name the table shows."""
    import torch

    from fluxai.perf.options import PerfOptions
    from fluxai.perf.quantize import MODES, check_mode

    shortcuts = {}
    for mode in MODES:
        try:
            check_mode(mode, device)
        except (ValueError, ImportError):
            continue
        shortcuts[f"--quantize {mode}"] = PerfOptions(quantize=mode)
    for t in (0.05, 0.1, 0.2, 0.4):
        shortcuts[f"--cache-threshold {t}"] = PerfOptions(cache_threshold=t)
    for preset in ("balanced", "low", "8gb"):
        shortcuts[f"--memory {preset}"] = PerfOptions(memory=preset)
    if torch.device(device).type == "cuda":
        shortcuts["--compile"] = PerfOptions(compile=True)
    return shortcuts


def run_quality(args: argparse.Namespace, s) -> int:
    from fluxai.perf.quality import shortcut_quality
    from fluxai.pipeline import FluxPipeline

    if args.seeds < 1:
        raise ValueError(f"--seeds must be a positive integer, got {args.seeds}")
    pipe = FluxPipeline.from_pretrained(s.model, torch_dtype=s.dtype).to(s.device)
    pipe.set_progress_bar_config(disable=True)
    d = pipe.defaults
    call = {"prompt": s.prompt, "width": s.width or d.width, "height": s.height or d.height,
            "num_inference_steps": s.steps or d.num_inference_steps}
    rows = shortcut_quality(pipe, quality_shortcuts(s.device), list(range(args.seeds)), call,
                            s.device, lambda m: print(m, file=sys.stderr, flush=True))
    print(f"model {s.model}  size {call['width']}x{call['height']}  steps "
          f"{call['num_inference_steps']}  seeds 0..{args.seeds - 1}  device {s.device}")
    print(f"| {'shortcut':26} | {'PSNR dB':>8} | {'SSIM':>6} | note")
    print(f"|{'-' * 28}|{'-' * 10}|{'-' * 8}|------")
    for r in rows:
        print(f"| {r.shortcut:26} | {r.psnr:8.2f} | {r.ssim:6.4f} | {r.note}")
    return 0
