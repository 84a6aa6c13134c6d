"""LoRA training data: image+caption folders or generated Shapes World examples, bucketed by
aspect ratio, encoded once into cached latents and text embeddings.

A folder holds images with a same-named `.txt` caption each (`cat.png` + `cat.txt`), or a
`captions.jsonl` index as `fluxai dataset` writes it. `shapes:<shape>` generates examples that
each show that shape (plus a share of ordinary examples, so the rest of the world is not
forgotten).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
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
    # Shapes data with stand-ins: the same scene with the new shape drawn as each known one,
    # and the caption in the same words naming that one; the first is the stand-in
    # (train.LoraTrainConfig.stand_in).
    twins: list[Twin] = field(default_factory=list)


@dataclass
class Twin:
    shape: str
    image: Image.Image
    caption: str


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
                    prior_fraction: float = 0.25, layout: str = "free",
                    stand_in: str | None = None, every_shape: bool = True) -> list[Example]:
    """`count` generated examples: most show `shape`, `prior_fraction` are ordinary scenes.
    With `stand_in` (a known shape), each example that shows `shape` also carries its scene
    drawn, and its caption written in the same words, with each known shape in its place:
    `stand_in` first, then (`every_shape`) the others in the contract's order."""
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
            twins = []
            if stand_in is not None and not prior:
                others = [stand_in, *(s for s in WORLD.shapes
                                      if every_shape and s not in (stand_in, shape))]
                # The same draws phrase every caption: only the shape's name differs.
                twins = [Twin(other, Image.fromarray(render(swap_shape(scene, shape, other))),
                              caption(swap_shape(spec, shape, other), copy.deepcopy(rng),
                                      "train"))
                         for other in others]
            out.append(Example(Image.fromarray(render(scene)), caption(spec, rng, "train"), prior,
                               twins))
            bar.update(1)
    return out


def swap_shape(scene: Any, shape: str, other: str) -> Any:
    """The scene (or prompt spec) with every `shape` as `other` (same colour, place, size)."""
    return replace(scene, objects=type(scene.objects)(
        replace(o, shape=other) if o.shape == shape else o for o in scene.objects))


@torch.no_grad()
def nearest_known_shape(shape: str, pipe: Any, size: int, layout: str = "free",
                        scenes: int = 32, seed: int = 0) -> str:
    """The known shape whose drawings the model's autoencoder encodes closest to `shape`'s: the
    one a model that never saw `shape` confuses it with (the hexagon: the circle)."""
    from fluxai.shapes import WORLD, place, render, sample_spec

    rng = np.random.default_rng([seed, 104_729])
    placed = []
    while len(placed) < scenes:
        spec = sample_spec(rng, split="train", shapes=WORLD.all_shapes)
        if any(o.shape == shape for o in spec.objects):
            placed.append(place(spec, size, size, rng, layout))

    def encode(images: list[np.ndarray]) -> Tensor:
        return encode_pixels(pipe, torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2))

    z = encode([render(s) for s in placed])
    distance = {other: (encode([render(swap_shape(s, shape, other)) for s in placed]) - z)
                .flatten(1).norm(dim=1).mean().item()
                for other in WORLD.shapes if other != shape}
    return min(distance, key=distance.get)


def encode_pixels(pipe: Any, pixels: Tensor) -> Tensor:
    """(N, 3, H, W) uint8 images -> the autoencoder's scaled latents (posterior means), float32
    on the CPU."""
    x = pixels.float() / 127.5 - 1
    return pipe.vae.encode(x.to(pipe.device, pipe.dtype)).float().cpu()


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
                  layout: str = "free", stand_in: str | None = None,
                  every_shape: bool = True) -> list[Example]:
    if data.startswith("shapes:"):
        return shapes_examples(data.split(":", 1)[1], count, size, seed, prior_fraction, layout,
                               stand_in, every_shape)
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
    # bucket -> (N_b, S, C, h, w): the latents of each example's twins (Example.twins, the
    # stand-in's first; zero without them), and bucket -> (N_b, S): their captions' rows in
    # `context` (-1 without them); both None when no example has twins.
    twin_latents: dict[tuple[int, int], Tensor] | None = None
    twins: dict[tuple[int, int], Tensor] | None = None
    stand_in: str | None = None  # the known shape of the first twin

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
        if saved.get("key") == key and "twin_latents" in saved:  # older caches rebuild
            return Cache(saved["latents"], saved["captions"], saved["context"], saved["pooled"],
                         saved["prior"], saved["images"], saved.get("twin_latents"),
                         saved.get("twins"), saved.get("stand_in"))
    examples = examples_fn()
    sizes = buckets(resolution, 2 * pipe.downscale)
    grouped: dict[tuple[int, int], list[Example]] = {}
    for ex in examples:
        grouped.setdefault(nearest_bucket(ex.image.width, ex.image.height, sizes), []).append(ex)
    said = {ex.caption for ex in examples} | {tw.caption for ex in examples for tw in ex.twins}
    unique = ["", *sorted(said - {""})]
    row = {c: i for i, c in enumerate(unique)}
    latents, captions, prior, images, twin_latents, twin_rows = {}, {}, {}, {}, {}, {}
    n_twins = max((len(ex.twins) for ex in examples), default=0)

    def to_pixels(images: list[Image.Image], size: tuple[int, int]) -> Tensor:
        return torch.from_numpy(np.stack([np.asarray(fit(im, size)) for im in images])
                                ).permute(0, 3, 1, 2).contiguous()

    bar = tqdm(total=sum(1 + len(ex.twins) for ex in examples), desc="encode latents")
    for size, group in grouped.items():
        chunks, pixels, twin_chunks = [], [], []
        for start in range(0, len(group), batch_size):
            part = group[start:start + batch_size]
            pixels.append(to_pixels([ex.image for ex in part], size))
            chunks.append(encode_pixels(pipe, pixels[-1]))
            bar.update(len(part))
            if n_twins:
                twinned = [j for j, ex in enumerate(part) if ex.twins]
                z = torch.zeros(len(part), n_twins, *chunks[-1].shape[1:])
                if twinned:
                    drawn = [tw.image for j in twinned for tw in part[j].twins]
                    z[twinned] = torch.cat([
                        encode_pixels(pipe, to_pixels(drawn[k:k + batch_size], size))
                        for k in range(0, len(drawn), batch_size)]).unflatten(
                        0, (len(twinned), n_twins))
                    bar.update(len(drawn))
                twin_chunks.append(z)
        latents[size] = torch.cat(chunks)
        images[size] = torch.cat(pixels)
        if n_twins:
            twin_latents[size] = torch.cat(twin_chunks)
            twin_rows[size] = torch.tensor([[row[tw.caption] for tw in ex.twins] or [-1] * n_twins
                                            for ex in group])
        captions[size] = [row[ex.caption] for ex in group]
        prior[size] = torch.tensor([ex.prior for ex in group], dtype=torch.bool)
    bar.close()
    contexts, pooleds = [], []
    for start in tqdm(range(0, len(unique), 64), desc="encode captions"):
        ctx, pooled = pipe.text_encoder.encode(unique[start:start + 64])
        contexts.append(ctx.float().cpu())
        pooleds.append(pooled.float().cpu())
    shown = next((ex.twins[0].shape for ex in examples if ex.twins), None)
    cache = Cache(latents, captions, torch.cat(contexts), torch.cat(pooleds), prior, images,
                  twin_latents if n_twins else None, twin_rows if n_twins else None, shown)
    torch_save({"key": key, **vars(cache)}, path)
    return cache
