"""Peak resident memory of loading a ~1B-parameter Flux checkpoint (recorded in
docs/benchmarks.md, "Loading").

    python scripts/measure_load_rss.py [--dir /tmp/fluxai-rss]

Writes a random bf16 checkpoint in BFL layout (2 GB) and the same as a diffusers folder, then
loads each in a fresh process and reports that process's peak RSS (ru_maxrss), after loading and
after reading every weight once (zero-copy views count only once their pages are touched, so
the second number is the honest one). A naive load (`Flux(cfg)` in bf16, then
`load_state_dict(safetensors.torch.load_file(...))`) is measured the same way for comparison.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch

from fluxai.config import FluxConfig

# ~1.0B parameters with FLUX.1's head size (so RoPE axes need no record) and text widths.
CONFIG = FluxConfig(hidden_size=2048, num_heads=16, depth=4, depth_single_blocks=6)


def peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make(folder: Path) -> tuple[Path, Path]:
    from fluxai.checkpoints.diffusers_keys import TRANSFORMER_KEYS, split_sizes
    from fluxai.checkpoints.safetensors_io import write_safetensors
    from fluxai.model.transformer import Flux

    bfl, diff = folder / "flux-1b.safetensors", folder / "flux-1b-diffusers"
    with torch.device("meta"):
        shapes = {k: tuple(v.shape) for k, v in Flux(CONFIG).state_dict().items()}
    gen = torch.Generator().manual_seed(0)

    def rand(shape):
        return (torch.randn(shape, generator=gen) * 0.02).to(torch.bfloat16)

    if not bfl.exists():  # random tensors made one at a time: the writer streams them
        write_safetensors(bfl, {k: (s, torch.bfloat16) for k, s in shapes.items()},
                          ((k, lambda s=s: rand(s)) for k, s in shapes.items()),
                          {"fluxai_kind": "transformer"})
    if not diff.exists():
        diff_shapes = {}
        for key, shape in shapes.items():
            part = TRANSFORMER_KEYS.to_diffusers(key)
            for name, rows in zip(part.sources, split_sizes(part, shape[0], CONFIG.hidden_size),
                                  strict=True):
                diff_shapes[name] = ((rows, *shape[1:]), torch.bfloat16)
        from fluxai.checkpoints.diffusers_config import transformer_config

        diff.mkdir()
        (diff / "config.json").write_text(json.dumps(transformer_config(CONFIG)))
        write_safetensors(diff / "diffusion_pytorch_model.safetensors", diff_shapes,
                          ((k, lambda s=s[0]: rand(s)) for k, s in diff_shapes.items()))
    return bfl, diff


def child(mode: str, path: str) -> None:
    torch.set_num_threads(1)
    from fluxai.model.transformer import Flux

    base = peak_mib()
    start = time.perf_counter()
    if mode == "naive":
        from safetensors.torch import load_file

        torch.set_default_dtype(torch.bfloat16)
        model = Flux(CONFIG)
        model.load_state_dict(load_file(path))
    else:
        from fluxai.checkpoints import load_transformer

        dtype = {"fluxai": None, "fluxai-fp32": torch.float32}.get(mode)
        model = load_transformer(path, dtype=dtype)
    seconds = time.perf_counter() - start
    loaded = peak_mib()
    with torch.no_grad():
        for p in model.parameters():
            p.sum()
    params = sum(p.numel() for p in model.parameters())
    model_mib = sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20
    print(json.dumps({"mode": mode, "params": params, "model_mib": round(model_mib),
                      "baseline_mib": round(base), "peak_after_load_mib": round(loaded),
                      "peak_after_touch_mib": round(peak_mib()), "load_s": round(seconds, 1)}))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", default="/tmp/fluxai-rss", help="where the checkpoints are written")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return
    folder = Path(args.dir)
    folder.mkdir(parents=True, exist_ok=True)
    bfl, diff = make(folder)
    print(f"checkpoint: {bfl} ({bfl.stat().st_size / 2**30:.2f} GiB)")
    for mode, path in (("fluxai", bfl), ("fluxai", diff), ("fluxai-fp32", bfl), ("naive", bfl)):
        out = subprocess.run([sys.executable, __file__, "--child", mode, str(path)],
                             capture_output=True, text=True, check=True)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        result["source"] = "diffusers folder" if path == diff else "BFL file"
        print(json.dumps(result))


if __name__ == "__main__":
    main()
