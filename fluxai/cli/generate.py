"""`fluxai generate`: text (and optionally an init image) to PNGs that carry their parameters."""

from __future__ import annotations

import argparse
import hashlib
import re
import secrets
from pathlib import Path
from typing import Any

from fluxai.cli.lora import apply_loras, resolve_loras
from fluxai.cli.perf_flags import add_perf_arguments, oom_explained, perf_options
from fluxai.metadata import read_params, save_png
from fluxai.perf.options import check_options, configure
from fluxai.registry import DEFAULT_MODEL
from fluxai.sampling import check_size


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    p = sub.add_parser(name, help="generate images from a prompt")
    p.add_argument("prompt", nargs="?", help="what to draw (optional with --from-image)")
    p.add_argument("--model", default=None, help=f"model name or folder (default {DEFAULT_MODEL})")
    p.add_argument("--size", default=None, help="WxH, multiples of 16 (default: the model's)")
    p.add_argument("--steps", type=int, default=None, help="Euler steps (default: the model's)")
    p.add_argument("--guidance", type=float, default=None,
                   help="guidance strength: the distilled guidance of dev models; for models "
                        "without it (schnell, flux-tiny) the classifier-free guidance scale")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    p.add_argument("-n", "--num-images", type=int, default=1, help="images to generate")
    p.add_argument("-o", "--output", default=None,
                   help="output PNG file, or a directory (default: current directory)")
    p.add_argument("--negative-prompt", default=None, help="negative prompt for true CFG")
    p.add_argument("--true-cfg", type=float, default=None, help="true classifier-free guidance")
    p.add_argument("--init-image", default=None, help="start from this image (img2img)")
    p.add_argument("--strength", type=float, default=None, help="img2img strength in [0, 1]")
    p.add_argument("--from-image", default=None,
                   help="replay the parameters stored in a PNG made by fluxai")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1, mps (default: best)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--lora", action="append", metavar="FILE[:SCALE]",
                   help="apply a LoRA (any supported format), optionally scaled; repeatable")
    add_perf_arguments(p)
    p.set_defaults(run=run)


def parse_size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"\s*(\d+)\s*[xX×]\s*(\d+)\s*", text)
    if not m:
        raise ValueError(f"size {text!r} is not WxH, e.g. 128x128")
    return int(m.group(1)), int(m.group(2))


def _slug(prompt: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", prompt.lower()).strip("-")[:40] or "image"


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


PIPELINE_KEYS = ("width", "height", "num_inference_steps", "guidance_scale", "true_cfg_scale",
                 "negative_prompt", "strength")


def resolve_settings(args: argparse.Namespace) -> dict[str, Any]:
    """Pipeline arguments: a PNG's stored parameters (--from-image), then explicit flags."""
    stored: dict[str, Any] = read_params(Path(args.from_image)) if args.from_image else {}
    call = {k: stored[k] for k in PIPELINE_KEYS if stored.get(k) is not None}
    prompt = args.prompt if args.prompt is not None else stored.get("prompt")
    if not prompt:
        raise ValueError("give a prompt (or --from-image with a fluxai PNG)")
    if args.size:
        call["width"], call["height"] = parse_size(args.size)
        check_size(call["width"], call["height"])
    if args.steps is not None:
        if args.steps < 1:
            raise ValueError(f"--steps must be a positive integer, got {args.steps}")
        call["num_inference_steps"] = args.steps
    if args.num_images < 1:
        raise ValueError(f"-n must be a positive integer, got {args.num_images}")
    if args.negative_prompt is not None:
        call["negative_prompt"] = args.negative_prompt
    if args.true_cfg is not None:
        call["true_cfg_scale"] = args.true_cfg
    if args.strength is not None:
        if not 0.0 <= args.strength <= 1.0:
            raise ValueError(f"--strength must be in [0, 1], got {args.strength}")
        call["strength"] = args.strength
    init = args.init_image or stored.get("init_image")
    if init:
        init = Path(init)
        if not init.is_file():
            raise FileNotFoundError(f"init image not found: {init}")
        digest = stored.get("init_image_sha256")
        if args.from_image and digest and digest != _file_digest(init):
            raise ValueError(f"{init} has changed since {args.from_image} was made; "
                             "replay needs the same init image")
    seed = args.seed if args.seed is not None else stored.get("seed")
    loras = resolve_loras(getattr(args, "lora", None), stored.get("loras"))
    return {
        "loras": loras,
        "prompt": prompt,
        "model": args.model or stored.get("model_ref") or DEFAULT_MODEL,
        "seed": secrets.randbelow(2**31) if seed is None else seed,
        "init_image": init,
        "call": call,
    }


def output_paths(output: str | None, prompt: str, seed: int, n: int) -> list[Path]:
    names = [f"{_slug(prompt)}-{seed + i}.png" for i in range(n)]
    if output is None:
        return [Path(name) for name in names]
    out = Path(output)
    if out.suffix.lower() == ".png":
        if n == 1:
            return [out]
        return [out.with_name(f"{out.stem}-{i}{out.suffix}") for i in range(n)]
    if out.suffix:
        raise ValueError(f"output {output!r} must be a .png file or a directory")
    return [out / name for name in names]


def pick_device(requested: str | None) -> str:
    import torch

    if requested:
        return requested
    if torch.cuda.is_available():
        return "cuda"
    return "cpu"


def run(args: argparse.Namespace) -> int:
    s = resolve_settings(args)
    paths = output_paths(args.output, s["prompt"], s["seed"], args.num_images)
    for path in paths:
        if path.parent.exists() and not path.parent.is_dir():
            raise ValueError(f"cannot write {path}: {path.parent} is not a directory")

    import torch
    from PIL import Image

    from fluxai.pipeline import FluxPipeline

    device = pick_device(args.device)
    dtype = torch.bfloat16 if device.startswith("cuda") and s["model"] != DEFAULT_MODEL \
        else torch.float32
    perf = perf_options(args)
    check_options(perf, device)  # a bad --quantize/--memory fails before any loading
    pipe = FluxPipeline.from_pretrained(s["model"], torch_dtype=dtype)
    pipe = pipe if perf.any else pipe.to(device)
    pipe.set_progress_bar_config(disable=args.quiet)
    lora_records = apply_loras(pipe, s["loras"], args.quiet)
    if perf.any:  # after LoRAs, so fused adapters are quantized with their base weights
        configure(pipe, device, perf)
    call = dict(s["call"])
    if args.guidance is not None:
        # Models without distilled guidance take the number as classifier-free guidance.
        guided = pipe.transformer.config.guidance_embed
        call["guidance_scale" if guided else "true_cfg_scale"] = args.guidance
    if s["init_image"]:
        call["image"] = Image.open(s["init_image"]).convert("RGB")
    generators = [torch.Generator("cpu").manual_seed(s["seed"] + i)
                  for i in range(args.num_images)]
    width, height = call.get("width", pipe.defaults.width), call.get("height", pipe.defaults.height)
    with oom_explained(pipe, perf, width, height, args.num_images):
        result = pipe(s["prompt"], num_images_per_prompt=args.num_images, generator=generators,
                      **call)
    for i, (image, params, path) in enumerate(
            zip(result.images, result.parameters, paths, strict=True)):
        params = {**params, "seed": s["seed"] + i, "model_ref": s["model"]}
        if lora_records:
            params["loras"] = lora_records
        if s["init_image"]:
            params["init_image"] = str(s["init_image"].resolve())
            params["init_image_sha256"] = _file_digest(s["init_image"])
        save_png(image, path, params)
        print(path)
    return 0
