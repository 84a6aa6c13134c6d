"""The Shapes World contract (`shapes-world.json`, vendored once) and the specs built on it.

`WORLD` is the contract's vocabulary and numbers; `PromptSpec` is what a prompt asks for, and
`Scene` is what was drawn. Captions, the renderer, the prompt parser and the judge all speak
these types, so a prompt means the same thing to the generator and to the judge.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

CONTRACT_PATH = Path(__file__).parent / "shapes-world.json"
RELATIONS = ("left of", "right of", "above", "below")


@dataclass(frozen=True)
class World:
    raw: dict[str, Any]

    @property
    def default_size(self) -> int:
        return self.raw["default_size"]

    @property
    def palette(self) -> dict[str, tuple[int, int, int]]:
        return {k: tuple(v) for k, v in self.raw["palette"].items()}

    @property
    def backgrounds(self) -> list[str]:
        return self.raw["backgrounds"]

    @property
    def object_colors(self) -> list[str]:
        return self.raw["object_colors"]

    @property
    def shapes(self) -> list[str]:
        return self.raw["shapes"]

    @property
    def all_shapes(self) -> list[str]:
        return self.raw["shapes"] + self.raw["held_out_shapes"]

    @property
    def plurals(self) -> dict[str, str]:
        return self.raw["plurals"]

    @property
    def sizes(self) -> dict[str, float]:
        return self.raw["sizes"]

    @property
    def positions(self) -> dict[str, tuple[int, int]]:
        return {k: tuple(v) for k, v in self.raw["positions"].items()}

    @property
    def counts(self) -> list[int]:
        return self.raw["counts"]

    @property
    def kinds(self) -> list[str]:
        return self.raw["kinds"]

    def __getattr__(self, name: str) -> Any:
        # Scalar numbers of the contract (star_inner_ratio, relation_margin, ...) by their name.
        try:
            return self.raw[name]
        except KeyError:
            raise AttributeError(name) from None


def load_world(path: Path = CONTRACT_PATH) -> World:
    return World(json.loads(path.read_text()))


WORLD = load_world()


@dataclass(frozen=True)
class ObjectSpec:
    """One object a prompt asks for; None means the prompt leaves it free."""

    shape: str
    color: str | None = None
    size: str | None = None  # small | medium | large
    position: str | None = None  # a 3x3 grid cell name, e.g. "top left"


@dataclass(frozen=True)
class PromptSpec:
    """What a prompt asks for, in the contract's terms.

    single_object / colors: one object; two_object / color_attr: two; position: two with
    `relation` meaning objects[0] RELATION objects[1]; counting: one object and `count`.
    """

    kind: str
    objects: tuple[ObjectSpec, ...]
    count: int | None = None
    relation: str | None = None  # one of RELATIONS
    background: str | None = None


@dataclass(frozen=True)
class PlacedObject:
    shape: str
    color: str
    cx: float  # pixels
    cy: float
    r: float


@dataclass
class Scene:
    """What was drawn: the ground truth of one image."""

    width: int
    height: int
    background: str
    objects: list[PlacedObject] = field(default_factory=list)


class Located(Protocol):
    cx: float
    cy: float


def relation_holds(a: Located, b: Located, relation: str, side: int,
                   margin: float | None = None) -> bool:
    """The contract's relations compare centres, with a margin (a fraction of the side S)."""
    m = (WORLD.relation_margin if margin is None else margin) * side
    return {
        "left of": a.cx < b.cx - m,
        "right of": a.cx > b.cx + m,
        "above": a.cy < b.cy - m,
        "below": a.cy > b.cy + m,
    }[relation]
