"""Does a model's text stream know which side of a relation each named shape goes?
(docs/models/flux-tiny.md, "Where it fails")

    python scripts/probe_text_sides.py [--model flux-tiny]

For captions "a <colour> <A> <relation> a <colour> <B>" over every ordered pair of the world's
shapes, reads the state of each shape word at the text encoder's output and after every double
block, and fits a linear probe for the side its shape belongs on (top/bottom for above/below,
left/right for left of/right of), tested on shape pairs it never saw. Chance is 0.5. Also
prints the mean cosine of the two shape words' states: how far the stream has blended them.

The side is mention order combined with the relation word, so a state that carries only mention
order (MiniLM's do, linearly, to 100%) probes at chance; a model whose image tokens are to find
"the shape that goes on top" by attention needs a text stream that has made that combination.
"""

from __future__ import annotations

import argparse
import random

import torch
import torch.nn.functional as F
from torch import Tensor

from fluxai.registry import fluxai_folder, load_fluxai_folder
from fluxai.sampling import image_ids, text_ids
from fluxai.shapes.world import WORLD

# Relation phrasings and the side (1: top / left) the first-named shape goes on.
ARRANGEMENTS = {
    "vertical": {"above": 1, "over": 1, "on top of": 1, "below": 0, "under": 0, "beneath": 0},
    "horizontal": {"to the left of": 1, "left of": 1, "on the left of": 1,
                   "to the right of": 0, "right of": 0, "on the right of": 0},
}


def shape_word_states(parts: dict, caption: str, first: str, second: str) -> list[Tensor] | None:
    """(2, hidden) states of the two shape words, at the input and after each double block."""
    encoder, model = parts["text_encoder"], parts["transformer"]
    tokens = encoder.tokenizer.convert_ids_to_tokens(encoder.tokenizer(caption)["input_ids"])
    if first not in tokens or second not in tokens:
        return None  # a shape word split into word pieces has no single state to read
    where = [tokens.index(first), len(tokens) - 1 - tokens[::-1].index(second)]
    context, pooled = encoder.encode([caption])
    noise = torch.randn(1, 16, model.config.in_channels, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        img, txt, vec, pe = model.prepare(
            noise, image_ids(8, 8, 1, "cpu"), context,
            text_ids(1, context.shape[1], "cpu"),
            torch.tensor([0.8]), pooled)
        states = [txt[0, where]]
        for block in model.double_blocks:
            img, txt = block(img, txt, vec, pe)
            states.append(txt[0, where])
    return states


def held_out_accuracy(x: Tensor, y: Tensor, test: Tensor) -> float:
    mean, std = x[~test].mean(0), x[~test].std(0) + 1e-6
    x = (x - mean) / std
    w = torch.zeros(x.shape[1], requires_grad=True)
    b = torch.zeros(1, requires_grad=True)
    opt = torch.optim.Adam([w, b], lr=1e-2)
    for _ in range(500):
        fit = F.binary_cross_entropy_with_logits(x[~test] @ w + b, y[~test])
        loss = fit + 1e-3 * w.square().sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return ((x[test] @ w + b > 0).float() == y[test]).float().mean().item()


def probe(parts: dict, sides: dict[str, int], rng: random.Random) -> str:
    per_depth: list[list[Tensor]] = []
    labels, pairs, cosines = [], [], []
    for first in WORLD.shapes:
        for second in WORLD.shapes:
            if first == second:
                continue
            for relation, first_side in sides.items():
                a, b = rng.sample(WORLD.object_colors, 2)
                states = shape_word_states(parts, f"a {a} {first} {relation} a {b} {second}",
                                           first, second)
                if states is None:
                    continue
                per_depth = per_depth or [[] for _ in states]
                for k, s in enumerate(states):
                    per_depth[k].extend(s)
                cosines.append([F.cosine_similarity(s[0], s[1], 0).item() for s in states])
                labels += [first_side, 1 - first_side]
                pairs += [(first, second)] * 2
    names = sorted(set(pairs))
    rng.shuffle(names)
    test_pairs = set(names[: len(names) // 4])
    test = torch.tensor([p in test_pairs for p in pairs])
    y = torch.tensor(labels, dtype=torch.float32)
    cos = torch.tensor(cosines).mean(0)
    cells = []
    for k, states in enumerate(per_depth):
        where = "input" if k == 0 else f"block {k - 1}"
        acc = held_out_accuracy(torch.stack(states), y, test)
        cells.append(f"{where}: side {acc:.2f}, cos {cos[k]:.2f}")
    return " | ".join(cells)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="flux-tiny")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    parts = load_fluxai_folder(fluxai_folder(args.model))
    print(args.model)
    for name, sides in ARRANGEMENTS.items():
        print(f"  {name:<10}", probe(parts, sides, random.Random(args.seed)))


if __name__ == "__main__":
    main()
