"""Rendered examples: (image, caption, spec, scene), reproducibly from a seed, and on disk."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import numpy as np
from PIL import Image
from tqdm import tqdm

from fluxai.atomic import atomic_path
from fluxai.shapes.captions import caption
from fluxai.shapes.render import render
from fluxai.shapes.scenes import place, sample_spec
from fluxai.shapes.world import PromptSpec, Scene


def iter_examples(seed: int, count: int, size: int = 128, height: int | None = None,
                  split: str = "train", shapes: list[str] | None = None, supersample: int = 1,
                  layout: str = "free") -> Iterator[tuple[np.ndarray, str, PromptSpec, Scene]]:
    """Example i depends only on (seed, i): a dataset can be regenerated or extended exactly."""
    for i in range(count):
        rng = np.random.default_rng([seed, i])
        spec = sample_spec(rng, split=split, shapes=shapes)
        scene = place(spec, size, height or size, rng, layout)
        yield render(scene, supersample), caption(spec, rng, split), spec, scene


def write_dataset(out: Path, count: int, size: int = 128, seed: int = 0,
                  split: str = "train", shapes: list[str] | None = None, layout: str = "free",
                  ) -> Path:
    """PNG images plus `captions.jsonl` (file, caption, kind, spec, ground-truth objects).

    The JSONL is written under a temporary name and renamed at the end, so an interrupted run
    never leaves an index that names missing images.
    """
    out.mkdir(parents=True, exist_ok=True)
    index = out / "captions.jsonl"
    with atomic_path(index) as tmp, tmp.open("w") as f:
        examples = iter_examples(seed, count, size, split=split, shapes=shapes, layout=layout)
        for i, (image, text, spec, scene) in enumerate(
                tqdm(examples, total=count, desc="shapes dataset")):
            name = f"{i:06d}.png"
            Image.fromarray(image).save(out / name)
            f.write(json.dumps({"file": name, "caption": text, "kind": spec.kind,
                                "spec": asdict(spec), "scene": asdict(scene)}) + "\n")
    return index
