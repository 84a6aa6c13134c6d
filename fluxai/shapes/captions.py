"""Captions: many phrasings of one `PromptSpec`, with a held-out share for evaluation.

Every template and noun-phrase form belongs to one split. Training captions never use a
held-out form, so the evaluation measures prompts phrased in ways the model never saw.
"""

from __future__ import annotations

import numpy as np

from fluxai.shapes.world import WORLD, ObjectSpec, PromptSpec

NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four"}

# Noun phrases of one object: {a} article, {size}/{color} adjectives (may be empty), {shape}.
NP_FORMS = {
    "train": [
        "{a} {size} {color} {shape}",
        "{a} {color} {size} {shape}",
        "{a} {size} {shape} that is {color}",
        "{a} {size} {shape} in {color}",
        "{a} {size} {color}-colored {shape}",
    ],
    "heldout": [
        "{a} {size} {shape} colored {color}",
        "{a} {size} {shape} which is {color}",
    ],
}
PLAIN_NP = {"train": ["{a} {size} {shape}"], "heldout": ["{a} {size} {shape}"]}

# "" gives the bare noun phrase the contract lists ("red circle, white background").
ARTICLES = {"train": ["a", "a", "a", "one", "a single", ""], "heldout": ["a", "just one"]}

POSITION_PHRASES = {
    "top left": ["in the top left corner", "at the top left", "in the upper left",
                 "top left", "in the top-left corner"],
    "top": ["at the top", "at the top center", "near the top edge", "at the top middle"],
    "top right": ["in the top right corner", "at the top right", "in the upper right",
                  "top right", "in the top-right corner"],
    "left": ["on the left", "at the left", "on the left side", "at the middle left"],
    "center": ["in the center", "in the middle", "at the center", "in the centre"],
    "right": ["on the right", "at the right", "on the right side", "at the middle right"],
    "bottom left": ["in the bottom left corner", "at the bottom left", "in the lower left",
                    "bottom left", "in the bottom-left corner"],
    "bottom": ["at the bottom", "at the bottom center", "near the bottom edge",
               "at the bottom middle"],
    "bottom right": ["in the bottom right corner", "at the bottom right", "in the lower right",
                     "bottom right", "in the bottom-right corner"],
}

BACKGROUND_FORMS = {
    "train": [" on a {bg} background", ", {bg} background", " against a {bg} background",
              " with a {bg} background", " on {bg}", ". {Bg} background",
              " over a {bg} background"],
    "heldout": [" against a {bg} backdrop", " on a plain {bg} background",
                ", the background is {bg}"],
}

RELATION_PHRASES = {
    "train": {
        "left of": ["to the left of", "left of", "on the left of", "on the left side of"],
        "right of": ["to the right of", "right of", "on the right of", "on the right side of"],
        "above": ["above", "over", "on top of", "higher than"],
        "below": ["below", "under", "beneath", "lower than"],
    },
    "heldout": {
        "left of": ["further left than", "to the left side of"],
        "right of": ["further right than", "to the right side of"],
        "above": ["placed above", "positioned over"],
        "below": ["underneath", "placed below"],
    },
}
# "{b} with {a} {rev}": the relation seen from the second object.
REVERSED = {
    "left of": ["to its left", "on its left"],
    "right of": ["to its right", "on its right"],
    "above": ["above it", "over it"],
    "below": ["below it", "under it"],
}

# Sentence templates per kind. {o} one object, {o1}/{o2} two, {rel} relation, {n}/{objs}
# count and plural noun, {pos} is filled by position phrases when the spec names a cell.
TEMPLATES = {
    "train": {
        "single": [
            "{o}", "{o}.", "there is {o}", "an image of {o}", "a picture of {o}",
            "draw {o}", "{o} on its own", "a simple drawing of {o}", "show {o}",
            "a flat illustration of {o}", "i see {o}", "{o} is drawn", "render {o}",
            "here is {o}", "an icon of {o}", "a canvas with {o}", "{o}, nothing else",
            "just {o}", "one object: {o}", "a scene with {o}", "{o} alone",
            "a drawing showing {o}", "a photo of {o}", "{o} on the canvas",
        ],
        "two": [
            "{o1} and {o2}", "{o1} and {o2}.", "{o1} next to {o2}", "{o1} with {o2}",
            "there is {o1} and {o2}", "an image of {o1} and {o2}", "{o1} plus {o2}",
            "a picture of {o1} and {o2}", "draw {o1} and {o2}", "{o1}, {o2}",
            "{o1} together with {o2}", "both {o1} and {o2}", "{o1} as well as {o2}",
            "a scene with {o1} and {o2}", "show {o1} and {o2}", "{o1} beside {o2}",
            "two objects: {o1} and {o2}", "{o1} alongside {o2}", "here are {o1} and {o2}",
            "a canvas with {o1} and {o2}", "{o1} and also {o2}", "a photo of {o1} and {o2}",
            "{o1} and {o2} on the canvas",
        ],
        "relation": [
            "{o1} {rel} {o2}", "{o1} {rel} {o2}.", "there is {o1} {rel} {o2}",
            "an image of {o1} {rel} {o2}", "{o1} placed {rel} {o2}", "draw {o1} {rel} {o2}",
            "{o1} is {rel} {o2}", "a picture of {o1} {rel} {o2}", "{o1} sits {rel} {o2}",
            "show {o1} {rel} {o2}", "{o1} positioned {rel} {o2}",
            "a scene where {o1} is {rel} {o2}",
            "{o1} drawn {rel} {o2}", "{o2} with {o1} {rev}", "{o2}, and {o1} {rev}",
            "{o1} that is {rel} {o2}", "a canvas with {o1} {rel} {o2}", "{o1} located {rel} {o2}",
            "here is {o1} {rel} {o2}", "{o1}, {rel} {o2}", "a photo of {o1} {rel} {o2}",
        ],
        "count": [
            "{n} {objs}", "{n} {objs}.", "there are {n} {objs}", "an image of {n} {objs}",
            "{digit} {objs}", "exactly {n} {objs}", "a picture of {n} {objs}",
            "draw {n} {objs}", "{n} {objs} in total", "a group of {n} {objs}",
            "show {n} {objs}", "a scene with {n} {objs}", "{digit} {objs} on the canvas",
            "{n} {objs} scattered around", "count them: {n} {objs}", "a set of {n} {objs}",
            "precisely {n} {objs}", "{n} {objs} and nothing else", "here are {n} {objs}",
            "{n} {objs} drawn", "a canvas with {digit} {objs}", "a photo of {n} {objs}",
            "{n} {objs} on the canvas",
        ],
    },
    "heldout": {
        "single": ["a lone {o_bare}", "please draw {o}",
                   "the picture contains {o}", "{o} is all there is", "can you make {o}",
                   "a minimal image with {o}"],
        "two": ["{o1} in addition to {o2}", "please draw {o1} and {o2}",
                "the picture contains {o1} and {o2}", "a pair: {o1} and {o2}",
                "{o1} accompanied by {o2}"],
        "relation": ["the picture contains {o1} {rel} {o2}", "please draw {o1} {rel} {o2}",
                     "{o1} appears {rel} {o2}", "make {o1} {rel} {o2}",
                     "{o2} that has {o1} {rev}"],
        "count": ["the picture contains {n} {objs}", "please draw {n} {objs}",
                  "{n} {objs}, no more, no fewer", "a total of {digit} {objs}",
                  "make {n} {objs}"],
    },
}
# A count of one says "exactly": "a square" asks for at least one, "exactly one square" for one.
SINGULAR_COUNT = {
    "train": ["exactly one {obj}", "only one {obj}", "1 {obj}", "there is exactly one {obj}",
              "exactly 1 {obj}", "only a single {obj}"],
    "heldout": ["the picture contains exactly one {obj}", "precisely one {obj}"],
}

KIND_GROUP = {"single_object": "single", "colors": "single", "two_object": "two",
              "color_attr": "two", "position": "relation", "counting": "count"}


def _pick(rng: np.random.Generator, items: list[str]) -> str:
    return items[int(rng.integers(len(items)))]


def _squash(text: str) -> str:
    return " ".join(text.split()).replace(" ,", ",").replace(" .", ".")


def _article(word: str, article: str) -> str:
    if article == "a" and word[:1] in "aeiou":
        return "an"
    return article


def noun_phrase(o: ObjectSpec, rng: np.random.Generator, split: str,
                article: str | None = None, plural: bool = False) -> str:
    forms = NP_FORMS[split] if o.color else PLAIN_NP[split]
    form = _pick(rng, forms)
    shape = WORLD.plurals[o.shape] if plural else o.shape
    text = form.format(a="{a}", size=o.size or "", color=o.color or "", shape=shape)
    text = _squash(text)
    if plural:
        text = text.replace("{a} ", "")
        text = text.replace("that is", "that are").replace("which is", "which are")
        return text
    art = _pick(rng, ARTICLES[split]) if article is None else article
    first = text.split()[1] if text.startswith("{a} ") else ""
    return text.replace("{a}", _article(first, art), 1)


def _position_clause(o: ObjectSpec, rng: np.random.Generator) -> str:
    return f" {_pick(rng, POSITION_PHRASES[o.position])}" if o.position else ""


def caption(spec: PromptSpec, rng: np.random.Generator, split: str = "train") -> str:
    """One natural-language phrasing of the spec from the given split's forms."""
    if split not in TEMPLATES:
        raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
    group = KIND_GROUP[spec.kind]
    templates = TEMPLATES[split][group]
    if group == "single":
        o = spec.objects[0]
        template = _pick(rng, templates)
        where = _position_clause(o, rng)
        text = template.format(o=noun_phrase(o, rng, split) + where,
                               o_bare=noun_phrase(o, rng, split, article="").strip() + where)
    elif group == "two":
        o1, o2 = (noun_phrase(o, rng, split) + _position_clause(o, rng) for o in spec.objects)
        text = _pick(rng, templates).format(o1=o1, o2=o2)
    elif group == "relation":
        o1, o2 = (noun_phrase(o, rng, split) for o in spec.objects)
        rel = _pick(rng, RELATION_PHRASES[split][spec.relation])
        text = _pick(rng, templates).format(o1=o1, o2=o2, rel=rel,
                                            rev=_pick(rng, REVERSED[spec.relation]))
    else:
        o = spec.objects[0]
        if spec.count == 1:
            text = _pick(rng, SINGULAR_COUNT[split]).format(
                obj=noun_phrase(o, rng, split, article="").strip())
        else:
            text = _pick(rng, templates).format(
                n=NUMBER_WORDS[spec.count], digit=str(spec.count),
                objs=noun_phrase(o, rng, split, plural=True))
    if spec.background:
        form = _pick(rng, BACKGROUND_FORMS[split])
        text = text.rstrip(".") + form.format(bg=spec.background,
                                               Bg=spec.background.capitalize())
    return _squash(text)


def eval_prompts(seed: int = 0, per_kind: int = 20, size: int | None = None
                 ) -> list[tuple[str, PromptSpec]]:
    """The held-out evaluation set: held-out phrasings, half of them held-out compositions."""
    from fluxai.shapes.scenes import sample_spec

    rng = np.random.default_rng(10_000 + seed)
    out = []
    for kind in WORLD.kinds:
        for _ in range(per_kind):
            spec = sample_spec(rng, kind, split="heldout")
            out.append((caption(spec, rng, "heldout"), spec))
    return out
