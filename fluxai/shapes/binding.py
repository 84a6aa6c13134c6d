"""Does the model put each named shape in its own place? A probe on the flow loss.

Accuracy says *that* two-object prompts fail; this says *why*, without sampling. For a rendered
scene the model's velocity loss is measured twice at the same noise and time: with the scene's
caption, and with the same caption (same template, same words) whose two shapes are exchanged.
A model that knows the first-named shape belongs on the left pays for the exchange; one that
draws whichever shape in either place does not. The gap is measured per arrangement (side by side,
and each relation), because a model can bind left/right (which every two-object scene teaches)
and not top/bottom (which only `above`/`below` prompts teach).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from fluxai.pipeline import FluxPipeline, image_to_tensor
from fluxai.sampling import image_ids, pack, text_ids
from fluxai.shapes.captions import caption
from fluxai.shapes.render import render
from fluxai.shapes.scenes import exchange_shapes, place, sample_spec

# The arrangements a two-object prompt can ask for, as (kind, relation). One relation each: a
# model that always draws the first-named shape on top gains on `above` scenes what it loses on
# `below` ones, and a pooled gap would hide that.
ARRANGEMENTS = {
    "two objects": ("two_object", None),
    "left of": ("position", "left of"),
    "right of": ("position", "right of"),
    "above": ("position", "above"),
    "below": ("position", "below"),
}


@dataclass(frozen=True)
class BindingGap:
    arrangement: str
    scenes: int
    t: float
    loss: float  # velocity MSE with the scene's own caption
    swapped_loss: float  # the same, the caption's two shapes exchanged

    @property
    def gap(self) -> float:
        return self.swapped_loss - self.loss

    @property
    def share(self) -> float:
        """The gap as a share of the loss: 0 = the caption's shape order is ignored."""
        return self.gap / self.loss if self.loss else 0.0


def probe_pairs(arrangement: str, n: int, seed: int = 0, size: int = 128,
                layout: str = "canonical") -> list[tuple[np.ndarray, str, str]]:
    """n (render, caption, exchanged caption) triples of distinct-shape scenes."""
    if arrangement not in ARRANGEMENTS:
        raise ValueError(f"arrangement must be one of {', '.join(ARRANGEMENTS)}, "
                         f"got {arrangement!r}")
    kind, relation = ARRANGEMENTS[arrangement]
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        spec = sample_spec(rng, kind)
        a, b = spec.objects
        if spec.relation != relation or a.shape == b.shape:
            continue
        image = render(place(spec, size, size, rng, layout))
        # The same generator state for both captions: the same template and phrasings.
        state = rng.bit_generator.state
        text = caption(spec, rng)
        rng.bit_generator.state = state
        out.append((image, text, caption(exchange_shapes(spec), rng)))
    return out


@torch.no_grad()
def binding_gaps(pipe: FluxPipeline, scenes: int = 64, timesteps: Sequence[float] = (0.6, 0.8),
                 seed: int = 0, batch_size: int = 32, layout: str = "canonical"
                 ) -> list[BindingGap]:
    """The binding gap of a pipeline's model, per arrangement and time."""
    if scenes < 1 or batch_size < 1:
        raise ValueError(f"scenes and batch_size must be positive, got {scenes}, {batch_size}")
    if not all(0.0 < t <= 1.0 for t in timesteps):
        raise ValueError(f"timesteps must lie in (0, 1], got {list(timesteps)}")
    model, device, dtype = pipe.transformer, pipe.device, pipe.dtype
    size = pipe.defaults.width
    gen = torch.Generator().manual_seed(seed)
    out = []
    for name in ARRANGEMENTS:
        pairs = probe_pairs(name, scenes, seed, size, layout)
        totals = {t: [0.0, 0.0] for t in timesteps}
        for start in range(0, scenes, batch_size):
            chunk = pairs[start:start + batch_size]
            images = torch.cat([image_to_tensor(p[0], size, size) for p in chunk])
            x0 = pipe.vae.encode(images.to(device, dtype))
            b, _, lh, lw = x0.shape
            img_ids, txt = image_ids(lh, lw, b, device).to(dtype), []
            for texts in ([p[1] for p in chunk], [p[2] for p in chunk]):
                context, pooled = pipe.encode_prompt(texts)
                txt.append((context, pooled, text_ids(b, context.shape[1], device).to(dtype)))
            # A guidance-distilled model (dev) is asked at its default strength.
            g = (torch.full((b,), pipe.defaults.guidance_scale, device=device, dtype=dtype)
                 if model.config.guidance_embed else None)
            for t in timesteps:
                noise = torch.randn(x0.shape, generator=gen).to(device, dtype)
                xt, target = pack((1 - t) * x0 + t * noise), pack(noise - x0).float()
                tt = torch.full((b,), t, device=device, dtype=dtype)
                for i, (context, pooled, ids) in enumerate(txt):
                    pred = model(xt, img_ids, context, ids, tt, pooled, g)
                    totals[t][i] += F.mse_loss(pred.float(), target, reduction="sum").item()
        per_scene = x0[0].numel()
        for t in timesteps:
            own, swapped = (v / (scenes * per_scene) for v in totals[t])
            out.append(BindingGap(name, scenes, t, own, swapped))
    return out


def format_gaps(gaps: Sequence[BindingGap]) -> str:
    lines = [f"{'arrangement':<20}{'t':>6}{'loss':>9}{'swapped':>9}{'gap':>9}{'share':>8}"]
    for g in gaps:
        lines.append(f"{g.arrangement:<20}{g.t:>6.2f}{g.loss:>9.4f}{g.swapped_loss:>9.4f}"
                     f"{g.gap:>9.4f}{g.share:>8.1%}")
    return "\n".join(lines)


def run_binding(args: argparse.Namespace) -> int:
    """`fluxai eval binding`: the table on stdout, then the gaps as one JSON object."""
    import json

    from fluxai.cli.generate import pick_device
    from fluxai.registry import DEFAULT_MODEL

    if args.scenes < 1:
        raise ValueError(f"--scenes must be a positive integer, got {args.scenes}")
    if not all(0.0 < t <= 1.0 for t in args.t):
        raise ValueError(f"--t values must lie in (0, 1], got {args.t}")
    model = args.model or DEFAULT_MODEL
    device = pick_device(args.device)
    pipe = FluxPipeline.from_pretrained(model, torch_dtype=torch.float32).to(device)
    if args.lora:
        from fluxai.cli.lora import apply_loras, resolve_loras

        apply_loras(pipe, resolve_loras(args.lora, None), True)
    gaps = binding_gaps(pipe, args.scenes, args.t, args.seed)
    print(format_gaps(gaps))
    print(json.dumps({"model": model, "gaps": [
        {"arrangement": g.arrangement, "scenes": g.scenes, "t": g.t, "loss": round(g.loss, 5),
         "swapped_loss": round(g.swapped_loss, 5), "gap": round(g.gap, 5)} for g in gaps]}))
    return 0
