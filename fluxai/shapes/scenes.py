"""Sampling what a prompt asks for (`PromptSpec`) and placing a scene that satisfies it.

Placement follows the contract: sizes and grid cells with their jitter, a border margin, no
overlaps, relations that hold by a clear margin. Held-out compositions (a stable hash of the
composition, never of the phrasing) never appear in the training split.
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

import numpy as np

from fluxai.shapes.world import (
    RELATIONS,
    WORLD,
    ObjectSpec,
    PlacedObject,
    PromptSpec,
    Scene,
    relation_holds,
)

HELD_OUT_MODULUS = 10  # one composition in ten is kept for evaluation only
EDGE_SIZES = ("small", "medium")  # a large object cannot sit in an edge cell and keep its margin

# How a scene fills in what its prompt leaves free. "free": any position on the canvas and any
# size. "canonical": the contract's grid cells in one arrangement per object count (or
# relation) and one size, so a prompt fixes its layout up to jitter, background and free
# colours; a small model then learns what the prompt names instead of spending its capacity
# on where things might go.
LAYOUTS = ("free", "canonical")
CANONICAL_CELLS = {
    1: ("center",),
    2: ("left", "right"),
    3: ("left", "center", "right"),
    4: ("top left", "top right", "bottom left", "bottom right"),
}
RELATION_CELLS = {"left of": ("left", "right"), "right of": ("right", "left"),
                  "above": ("top", "bottom"), "below": ("bottom", "top")}


def composition_key(spec: PromptSpec) -> str | None:
    """What a composition is, independent of phrasing, size, position and background.

    None for kinds with too few compositions to hold any out (a single shape or colour+shape).
    """
    def obj(o: ObjectSpec) -> str:
        return f"{o.color or ''} {o.shape}".strip()

    if spec.kind in ("two_object", "color_attr"):
        return f"{spec.kind}:" + "|".join(sorted(obj(o) for o in spec.objects))
    if spec.kind == "position":
        a, b = spec.objects
        rel = spec.relation
        # "A right of B" is "B left of A": one key for both.
        if rel in ("right of", "below"):
            a, b, rel = b, a, {"right of": "left of", "below": "above"}[rel]
        return f"position:{obj(a)} {rel} {obj(b)}"
    if spec.kind == "counting" and spec.objects[0].color is not None:
        return f"counting:{spec.count} {obj(spec.objects[0])}"
    return None


def is_held_out(spec: PromptSpec) -> bool:
    key = composition_key(spec)
    if key is None:
        return False
    digest = hashlib.sha256(key.encode()).digest()
    return int.from_bytes(digest[:4], "little") % HELD_OUT_MODULUS == 0


def _choice(rng: np.random.Generator, items: list | tuple):
    return items[int(rng.integers(len(items)))]


def _maybe(rng: np.random.Generator, p: float, value):
    return value if rng.random() < p else None


def _object(rng: np.random.Generator, shapes: list[str], colored: bool, p_size: float,
            p_position: float, exclude_shape: str | None = None) -> ObjectSpec:
    shape = _choice(rng, [s for s in shapes if s != exclude_shape])
    color = _choice(rng, WORLD.object_colors) if colored else None
    position = _maybe(rng, p_position, _choice(rng, list(WORLD.positions)))
    sizes = list(WORLD.sizes) if position in (None, "center") else list(EDGE_SIZES)
    return ObjectSpec(shape, color, _maybe(rng, p_size, _choice(rng, sizes)), position)


def _draw_spec(rng: np.random.Generator, kind: str, shapes: list[str]) -> PromptSpec:
    spec = _draw_objects(rng, kind, shapes)
    named = {o.color for o in spec.objects}
    backgrounds = [b for b in WORLD.backgrounds if b not in named]
    return replace(spec, background=_maybe(rng, 0.35, _choice(rng, backgrounds)))


def _draw_objects(rng: np.random.Generator, kind: str, shapes: list[str]) -> PromptSpec:
    background = None
    if kind in ("single_object", "colors"):
        objects = (_object(rng, shapes, kind == "colors", 0.25, 0.3),)
        return PromptSpec(kind, objects, background=background)
    if kind in ("two_object", "color_attr"):
        a = _object(rng, shapes, kind == "color_attr", 0.1, 0.0)
        b = _object(rng, shapes, kind == "color_attr", 0.1, 0.0, exclude_shape=a.shape)
        return PromptSpec(kind, (a, b), background=background)
    if kind == "position":
        a = _object(rng, shapes, rng.random() < 0.3, 0.0, 0.0)
        b = _object(rng, shapes, a.color is not None, 0.0, 0.0, exclude_shape=a.shape)
        return PromptSpec(kind, (a, b), relation=_choice(rng, RELATIONS), background=background)
    if kind == "counting":
        count = _choice(rng, WORLD.counts)
        obj = _object(rng, shapes, rng.random() < 0.3, 0.0, 0.0)
        return PromptSpec(kind, (obj,), count=count, background=background)
    raise ValueError(f"unknown kind {kind!r}; known: {', '.join(WORLD.kinds)}")


def sample_spec(rng: np.random.Generator, kind: str | None = None, split: str = "train",
                shapes: list[str] | None = None) -> PromptSpec:
    """A random prompt spec. split="train" never returns a held-out composition;
    split="heldout" returns one half of the time (where the kind has any)."""
    if split not in ("train", "heldout"):
        raise ValueError(f"split must be 'train' or 'heldout', got {split!r}")
    kind = kind or _choice(rng, WORLD.kinds)
    shapes = shapes or WORLD.shapes
    want_held_out = split == "heldout" and rng.random() < 0.5
    for _ in range(1000):
        spec = _draw_spec(rng, kind, shapes)
        if split == "train" and is_held_out(spec):
            continue
        if want_held_out and not is_held_out(spec) and composition_key(spec) is not None:
            continue
        return spec
    return spec


# -- placement ------------------------------------------------------------------------------

def _radius(size: str | None, side: int, rng: np.random.Generator) -> float:
    name = size or _choice(rng, list(WORLD.sizes))
    return WORLD.sizes[name] * side * (1 + rng.uniform(-WORLD.size_jitter, WORLD.size_jitter))


def _centre(position: str | None, r: float, width: int, height: int,
            rng: np.random.Generator) -> tuple[float, float]:
    margin = WORLD.border_margin * min(width, height)
    lo_x, hi_x = r + margin + 0.5, width - r - margin - 0.5
    lo_y, hi_y = r + margin + 0.5, height - r - margin - 0.5
    if position is None:
        return rng.uniform(lo_x, hi_x), rng.uniform(lo_y, hi_y)
    col, row = WORLD.positions[position]
    jitter = WORLD.position_jitter * min(width, height)
    cx = (2 * col + 1) / 6 * width + rng.uniform(-jitter, jitter)
    cy = (2 * row + 1) / 6 * height + rng.uniform(-jitter, jitter)
    # Keep the margin: an edge cell pulls its jitter inwards rather than touch the border.
    return float(np.clip(cx, lo_x, hi_x)), float(np.clip(cy, lo_y, hi_y))


def _separate(a: PlacedObject, b: PlacedObject, gap: float) -> bool:
    return (abs(a.cx - b.cx) >= a.r + b.r + gap) or (abs(a.cy - b.cy) >= a.r + b.r + gap)


def _wanted_objects(spec: PromptSpec) -> list[ObjectSpec]:
    if spec.kind == "counting":
        return [spec.objects[0]] * spec.count
    return list(spec.objects)


def check_layout(layout: str, name: str = "layout") -> None:
    if layout not in LAYOUTS:
        raise ValueError(f"{name} must be one of {', '.join(LAYOUTS)}, got {layout!r}")


def _default_cells(spec: PromptSpec, wanted: list[ObjectSpec]) -> list[str]:
    if spec.relation:
        return list(RELATION_CELLS[spec.relation])  # by role, so that the relation holds
    # Cells another object names are not handed out again, so a named cell never collides
    # with a default one.
    taken = {o.position for o in wanted}
    free = iter([c for c in CANONICAL_CELLS[len(wanted)] if c not in taken])
    return [o.position or next(free) for o in wanted]


def canonical_objects(spec: PromptSpec) -> list[ObjectSpec]:
    """The objects of the canonical layout: each unplaced object gets its arrangement's cell by
    prompt order; an unsized object is large when alone in the centre, medium otherwise (one
    size for every arrangement of two to four)."""
    wanted = _wanted_objects(spec)
    alone = len(wanted) == 1 and wanted[0].position in (None, "center")
    size = "large" if alone else "medium"
    return [replace(o, position=o.position or cell, size=o.size or size)
            for o, cell in zip(wanted, _default_cells(spec, wanted), strict=True)]


def place(spec: PromptSpec, width: int, height: int, rng: np.random.Generator,
          layout: str = "free") -> Scene:
    """A scene that satisfies the spec exactly; `layout` says how free attributes are drawn."""
    check_layout(layout)
    side = min(width, height)
    named = {o.color for o in spec.objects} - {None}
    if spec.background in named:
        raise ValueError(f"a {spec.background} object on a {spec.background} background "
                         "would be invisible; the contract never draws one")
    background = spec.background or _choice(
        rng, [b for b in WORLD.backgrounds if b not in named])
    wanted = canonical_objects(spec) if layout == "canonical" else _wanted_objects(spec)
    # Counting scenes draw every object of one colour unless the prompt says otherwise, so a
    # "three squares" image is three of the same thing, as a person would draw it.
    shared_color = _choice(rng, [c for c in WORLD.object_colors if c != background])
    gap = WORLD.border_margin * side
    for attempt in range(400):
        # After many failures, smaller free sizes make crowded scenes fit.
        shrink = attempt >= 200
        placed: list[PlacedObject] = []
        for o in wanted:
            if o.color is not None:
                color = o.color
            elif spec.kind == "counting":
                color = shared_color
            else:
                color = _choice(rng, [c for c in WORLD.object_colors if c != background])
            size = o.size or ("small" if shrink else None)
            for _ in range(50):
                r = _radius(size, side, rng)
                cx, cy = _centre(o.position, r, width, height, rng)
                cand = PlacedObject(o.shape, color, cx, cy, r)
                if all(_separate(cand, p, gap) for p in placed):
                    break
            else:
                break
            placed.append(cand)
        if len(placed) != len(wanted):
            continue
        if spec.relation and not relation_holds(placed[0], placed[1], spec.relation, side,
                                                margin=2 * WORLD.relation_margin):
            continue
        return Scene(width, height, background, placed)
    raise ValueError(f"cannot place {spec} on a {width}x{height} canvas")


def exchange_shapes(spec: PromptSpec) -> PromptSpec:
    """The spec with its two objects' shapes exchanged; colours, sizes and places stay."""
    if len(spec.objects) != 2:
        raise ValueError(f"exchanging shapes needs two objects, the spec has {len(spec.objects)}")
    a, b = spec.objects
    return replace(spec, objects=(replace(a, shape=b.shape), replace(b, shape=a.shape)))
