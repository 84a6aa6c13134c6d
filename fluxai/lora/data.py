"""LoRA training data: image+caption folders or generated Shapes World examples, bucketed by
aspect ratio, encoded once into cached latents and text embeddings.

A folder holds images with a same-named `.txt` caption each (`cat.png` + `cat.txt`), or a
`captions.jsonl` index as `fluxai dataset` writes it. `shapes:<shape>` generates examples that
each show that shape (plus a share of ordinary examples, so the rest of the world is not
forgotten).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from tqdm import tqdm

from fluxai.atomic import torch_save

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp")


@dataclass
class Example:
    image: Image.Image
    caption: str
    prior: bool = False  # an ordinary scene, there to keep what the base model already does


def folder_examples(folder: Path) -> list[Example]:
    if not folder.is_dir():
        raise FileNotFoundError(f"training data folder not found: {folder}")
    index = folder / "captions.jsonl"
    if index.is_file():
        rows = [json.loads(line) for line in index.read_text().splitlines() if line.strip()]
        return [Example(Image.open(folder / r["file"]).convert("RGB"), r["caption"])
                for r in rows]
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise ValueError(f"{folder} holds no images ({', '.join(IMAGE_SUFFIXES)}) and no "
                         "captions.jsonl")
    missing = [p.name for p in images if not p.with_suffix(".txt").is_file()]
    if missing:
        raise ValueError(f"{len(missing)} of {len(images)} images in {folder} have no caption "
                         f"file, e.g. {missing[0]} needs {Path(missing[0]).stem}.txt")
    return [Example(Image.open(p).convert("RGB"), p.with_suffix(".txt").read_text().strip())
            for p in images]


def shapes_examples(shape: str, count: int, size: int, seed: int = 0,
                    prior_fraction: float = 0.25, layout: str = "free") -> list[Example]:
    """`count` generated examples: most show `shape`, `prior_fraction` are ordinary scenes."""
    from fluxai.shapes import WORLD, caption, place, render, sample_spec

    if shape not in WORLD.all_shapes:
        raise ValueError(f"unknown shape {shape!r}; Shapes World has "
                         f"{', '.join(WORLD.all_shapes)}")
    n_prior = round(count * prior_fraction)
    out: list[Example] = []
    i = 0
    with tqdm(total=count, desc=f"render shapes:{shape}") as bar:
        while len(out) < count:
            rng = np.random.default_rng([seed, 7919, i])
            i += 1
            prior = len(out) < n_prior
            spec = sample_spec(rng, split="train",
                               shapes=WORLD.shapes if prior else WORLD.all_shapes)
            if not prior and all(o.shape != shape for o in spec.objects):
                continue
            scene = place(spec, size, size, rng, layout)
            out.append(Example(Image.fromarray(render(scene)), caption(spec, rng, "train"), prior))
            bar.update(1)
    return out


def shape_eval_prompts(shape: str, per_kind: int = 10, seed: int = 0) -> list[tuple[str, Any]]:
    """Evaluation prompts that all involve `shape`, in held-out phrasings, every kind."""
    from fluxai.shapes import WORLD, caption, sample_spec

    rng = np.random.default_rng([20_000, seed])
    out = []
    for kind in WORLD.kinds:
        found = 0
        while found < per_kind:
            spec = sample_spec(rng, kind, split="heldout", shapes=WORLD.all_shapes)
            if any(o.shape == shape for o in spec.objects):
                out.append((caption(spec, rng, "heldout"), spec))
                found += 1
    return out


def write_eval_prompts(path: Path, prompts: list[tuple[str, Any]]) -> Path:
    """JSONL as `fluxai eval shapes --prompts` reads it."""
    from fluxai.shapes.evaluate import spec_to_dict

    path.write_text("".join(json.dumps({"prompt": text, "spec": spec_to_dict(spec)}) + "\n"
                            for text, spec in prompts))
    return path


def load_examples(data: str, size: int, count: int, seed: int, prior_fraction: float,
                  layout: str = "free") -> list[Example]:
    if data.startswith("shapes:"):
        return shapes_examples(data.split(":", 1)[1], count, size, seed, prior_fraction, layout)
    return folder_examples(Path(data).expanduser())


def buckets(resolution: int, multiple: int, max_ratio: float = 2.0) -> list[tuple[int, int]]:
    """(width, height) sizes of about resolution² pixels, each side a multiple of `multiple`."""
    out = set()
    for w in range(multiple, int(resolution * max_ratio) + 1, multiple):
        h = (resolution * resolution // w) // multiple * multiple
        if h >= multiple and 1 / max_ratio <= w / h <= max_ratio:
            out.add((w, h))
    out.add((resolution // multiple * multiple,) * 2)
    return sorted(out)


def nearest_bucket(width: int, height: int, sizes: list[tuple[int, int]]) -> tuple[int, int]:
    ratio = math.log(width / height)
    return min(sizes, key=lambda s: abs(math.log(s[0] / s[1]) - ratio))


def fit(image: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Scale to cover `size`, then crop the centre."""
    w, h = size
    scale = max(w / image.width, h / image.height)
    cover = (max(w, round(image.width * scale)), max(h, round(image.height * scale)))
    resized = image.resize(cover, Image.Resampling.LANCZOS)
    left, top = (resized.width - w) // 2, (resized.height - h) // 2
    return resized.crop((left, top, left + w, top + h))


@dataclass
class Cache:
    """Everything the training loop reads: no autoencoder or text encoder runs per step."""

    latents: dict[tuple[int, int], Tensor]  # bucket -> (N_b, C, h, w) scaled latents
    captions: dict[tuple[int, int], list[int]]  # bucket -> row in `context` per example
    context: Tensor  # (U, L, D), row 0 the empty prompt (caption dropout)
    pooled: Tensor  # (U, D)
    prior: dict[tuple[int, int], Tensor]  # bucket -> (N_b,) bool: Example.prior
    images: dict[tuple[int, int], Tensor]  # bucket -> (N_b, 3, H, W) uint8, for the decoder

    @property
    def size(self) -> int:
        return sum(len(v) for v in self.latents.values())


def cache_key(*parts: object) -> str:
    return hashlib.sha256(json.dumps([str(p) for p in parts]).encode()).hexdigest()[:16]


@torch.no_grad()
def build_cache(examples_fn: Callable[[], list[Example]], pipe: Any, resolution: int,
                path: Path, key: str, batch_size: int = 16) -> Cache:
    """Encode latents per aspect bucket and every caption, or reload them when `key` (data,
    model, resolution) matches the saved cache; `examples_fn` runs only when needed."""
    if path.is_file():
        saved = torch.load(path, weights_only=False)
        if saved.get("key") == key and "images" in saved:  # older caches rebuild
            return Cache(saved["latents"], saved["captions"], saved["context"], saved["pooled"],
                         saved["prior"], saved["images"])
    examples = examples_fn()
    sizes = buckets(resolution, 2 * pipe.downscale)
    grouped: dict[tuple[int, int], list[Example]] = {}
    for ex in examples:
        grouped.setdefault(nearest_bucket(ex.image.width, ex.image.height, sizes), []).append(ex)
    unique = ["", *sorted({ex.caption for ex in examples} - {""})]
    row = {c: i for i, c in enumerate(unique)}
    latents, captions, prior, images = {}, {}, {}, {}
    bar = tqdm(total=len(examples), desc="encode latents")
    for size, group in grouped.items():
        chunks, pixels = [], []
        for start in range(0, len(group), batch_size):
            imgs = [np.asarray(fit(ex.image, size)) for ex in group[start:start + batch_size]]
            pixels.append(torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2).contiguous())
            x = pixels[-1].float() / 127.5 - 1
            chunks.append(pipe.vae.encode(x.to(pipe.device, pipe.dtype)).float().cpu())
            bar.update(len(imgs))
        latents[size] = torch.cat(chunks)
        images[size] = torch.cat(pixels)
        captions[size] = [row[ex.caption] for ex in group]
        prior[size] = torch.tensor([ex.prior for ex in group], dtype=torch.bool)
    bar.close()
    contexts, pooleds = [], []
    for start in tqdm(range(0, len(unique), 64), desc="encode captions"):
        ctx, pooled = pipe.text_encoder.encode(unique[start:start + 64])
        contexts.append(ctx.float().cpu())
        pooleds.append(pooled.float().cpu())
    cache = Cache(latents, captions, torch.cat(contexts), torch.cat(pooleds), prior, images)
    torch_save({"key": key, **vars(cache)}, path)
    return cache
