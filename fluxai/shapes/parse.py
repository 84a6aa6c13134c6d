"""Reading a prompt back into what it asks for: text -> `PromptSpec`.

The evaluator judges images against specs, so a prompt file can be plain language. The
parser knows the contract's vocabulary (colours, shapes and plurals, sizes, counts as words or
digits, relations and their synonyms, grid positions, backgrounds) and binds each colour, size
and position to the shape it belongs to:

- words before a shape belong to it ("a small red circle");
- words after a shape, up to the next separator ("and", ",", "with", "next to", a relation),
  belong to it too ("a circle that is red", "a square colored red in the top left corner");
- "B with A to its left" is "A left of B".

The kind follows the contract's table: one object is `colors` when coloured, else
`single_object`; a count of two or more, a plural, or an exact "exactly one"/"only one"/"1"
makes it `counting`; two objects are `position` with a relation, `color_attr` when both are
coloured, else `two_object`. Anything outside the vocabulary raises ValueError naming it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from fluxai.shapes.world import WORLD, ObjectSpec, PromptSpec

# -- vocabulary -------------------------------------------------------------------------------

SHAPE_SYNONYMS = {
    "circle": ["circle", "disc", "disk", "dot"],
    "square": ["square"],
    "triangle": ["triangle"],
    "diamond": ["diamond", "rhombus", "lozenge"],
    "star": ["star"],
    "cross": ["cross", "plus sign"],
    "hexagon": ["hexagon"],
}
SIZE_SYNONYMS = {
    "small": ["small", "tiny", "little", "small sized"],
    "medium": ["medium", "medium sized", "mid sized", "middle sized"],
    "large": ["large", "big", "huge", "large sized", "big sized"],
}
COUNT_WORDS = {"one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
               "eight": 8, "nine": 9, "ten": 10, "a pair of": 2, "a couple of": 2}
RELATION_SYNONYMS = {
    "left of": ["to the left of", "left of", "on the left of", "on the left side of",
                "to the left side of", "further left than", "at the left of"],
    "right of": ["to the right of", "right of", "on the right of", "on the right side of",
                 "to the right side of", "further right than", "at the right of"],
    "above": ["above", "over", "on top of", "higher than", "atop", "higher up than"],
    "below": ["below", "under", "beneath", "lower than", "underneath", "lower down than"],
}
# The relation seen from the object named second: "B with A to its left" is "A left of B".
REVERSED_SYNONYMS = {
    "left of": ["to its left", "on its left", "to the left of it", "left of it"],
    "right of": ["to its right", "on its right", "to the right of it", "right of it"],
    "above": ["above it", "over it", "on top of it"],
    "below": ["below it", "under it", "beneath it", "underneath it"],
}
SEPARATORS = ["and", ",", "with", "next to", "beside", "plus", "together with", "as well as",
              "alongside", "in addition to", "accompanied by", "and also", "along with",
              "besides", "then"]
# "exactly one square" asks for one and no more: a count, not just an object.
EXACT_WORDS = ["exactly", "only", "precisely", "a total of", "in total", "no more",
               "nothing else"]
VERTICAL = {"top": 0, "upper": 0, "bottom": 2, "lower": 2}
HORIZONTAL = {"left": 0, "right": 2}
MIDDLE = {"center", "middle", "central"}
POSITION_FILLER = {"corner", "edge", "side", "part", "area", "region", "half"}
FILLER = {
    "the", "there", "is", "are", "of", "in", "on", "at", "that", "which", "it", "its", "to",
    "by", "for", "image", "picture", "photo", "scene", "canvas", "drawing", "illustration",
    "icon", "draw", "drawn", "render", "rendered", "show", "shows", "showing", "shown",
    "depicting", "depicts", "containing", "contains", "contain", "colored", "painted", "filled",
    "i", "we", "see", "view", "here", "just", "single", "lone", "solitary", "alone", "own",
    "simple", "flat", "minimal", "please", "can", "you", "make", "made", "object", "objects",
    "shape", "shapes", "thing", "things", "group", "set", "total", "count", "them", "they",
    "scattered", "around", "both", "also", "sits", "sit", "sitting", "located", "positioned",
    "placed", "appears", "appear", "where", "has", "have", "having", "pair", "no", "more",
    "fewer", "less", "else", "nothing", "all", "sized", "color", "some", "each", "plain",
    "solid", "this", "these", "those", "art", "graphic", "everything", "somewhere", "near",
    "towards", "toward", "be", "should", "must",
}
BACKGROUND_WORDS = ("background", "backdrop", "bg")
NORMALISE = [(r"\bgrey\b", "gray"), (r"\bcentre\b", "center"), (r"\bcolou?red\b", "colored"),
             (r"\bcolour\b", "color"), (r"[-_/]", " "), (r"[.:;!?]", " , "), (r",", " , "),
             (r"['\"()]", " ")]


def _phrase(text: str) -> tuple[str, ...]:
    return tuple(text.split())


@dataclass(frozen=True)
class _Tok:
    kind: str  # shape|color|size|count|exact|rel|rev|sep|pos|article|filler
    value: object = None
    plural: bool = False


def _lexicon() -> dict[tuple[str, ...], _Tok]:
    lex: dict[tuple[str, ...], _Tok] = {}
    for shape, words in SHAPE_SYNONYMS.items():
        for w in words:
            lex[_phrase(w)] = _Tok("shape", shape)
            plural = WORLD.plurals[shape] if w == shape else (
                w + "es" if w.endswith(("s", "x", "sh")) else w + "s")
            lex[_phrase(plural)] = _Tok("shape", shape, plural=True)
    for color in WORLD.palette:
        lex[(color,)] = _Tok("color", color)
    for size, words in SIZE_SYNONYMS.items():
        for w in words:
            lex[_phrase(w)] = _Tok("size", size)
    for w, n in COUNT_WORDS.items():
        lex[_phrase(w)] = _Tok("count", n)
    for n in range(1, 11):
        # A digit is an explicit count: "1 square" is exactly one.
        lex[(str(n),)] = _Tok("count", n, plural=True)
    for w in EXACT_WORDS:
        lex[_phrase(w)] = _Tok("exact")
    for rel, words in RELATION_SYNONYMS.items():
        for w in words:
            lex[_phrase(w)] = _Tok("rel", rel)
    for rel, words in REVERSED_SYNONYMS.items():
        for w in words:
            lex[_phrase(w)] = _Tok("rev", rel)
    for w in SEPARATORS:
        lex[_phrase(w)] = _Tok("sep")
    for w in ("a", "an"):
        lex[(w,)] = _Tok("article")
    for n in [*COUNT_WORDS, *map(str, range(1, 11))]:
        for noun in ("object", "objects", "thing", "things", "shape", "shapes"):
            lex[(*_phrase(n), noun)] = _Tok("filler")  # "two objects: a circle and a star"
    return lex


_LEXICON = _lexicon()
_MAX_PHRASE = max(len(k) for k in _LEXICON)
_POSITION_WORDS = set(VERTICAL) | set(HORIZONTAL) | MIDDLE
_SHAPE_WORDS = {w for k, t in _LEXICON.items() if t.kind in ("shape", "size", "color")
                for w in k} | {"colored"}
_COLOR_RE = "|".join(WORLD.backgrounds)
_BACKGROUND_RES = [
    # "on a plain black background", "black backdrop", "with a gray background"
    re.compile(rf"\b(?:(?:on|against|with|over|in front of)\s+)?(?:(?:a|an|the)\s+)?"
               rf"(?:(?:plain|solid|flat|uniform|simple)\s+)?({_COLOR_RE})\s+"
               rf"(?:{'|'.join(BACKGROUND_WORDS)})\b"),
    # "the background is gray", "background: black"
    re.compile(rf"\b(?:the\s+)?(?:{'|'.join(BACKGROUND_WORDS)})\s+(?:color\s+)?(?:is\s+|of\s+)?"
               rf"(?:,\s+)?({_COLOR_RE})\b"),
    # "a red circle on white": a background colour that no shape follows
    re.compile(rf"\bon\s+(?:(?:a|the)\s+)?(?:plain\s+)?({_COLOR_RE})\b"
               rf"(?!\s+(?:{'|'.join(sorted(_SHAPE_WORDS, key=len, reverse=True))})\b)"),
]


# -- tokens -----------------------------------------------------------------------------------

def _normalise(text: str) -> str:
    text = text.lower().strip()
    for pattern, repl in NORMALISE:
        text = re.sub(pattern, repl, text)
    return " ".join(text.split())


def _take_background(text: str, prompt: str) -> tuple[str, str | None]:
    found: set[str] = set()
    for regex in _BACKGROUND_RES:
        found.update(m.group(1) for m in regex.finditer(text))
        text = regex.sub(" , ", text)
    if len(found) > 1:
        raise ValueError(f"prompt {prompt!r} names several backgrounds: "
                         f"{', '.join(sorted(found))}")
    return " ".join(text.split()), (found.pop() if found else None)


def _position(words: list[str], prompt: str) -> str:
    rows = {VERTICAL[w] for w in words if w in VERTICAL}
    cols = {HORIZONTAL[w] for w in words if w in HORIZONTAL}
    if len(rows) > 1 or len(cols) > 1:
        raise ValueError(f"prompt {prompt!r}: contradictory position {' '.join(words)!r}")
    cell = (cols.pop() if cols else 1, rows.pop() if rows else 1)
    return next(name for name, c in WORLD.positions.items() if tuple(c) == cell)


def _tokens(text: str, prompt: str) -> list[_Tok]:
    words = text.split()
    out: list[_Tok] = []
    i = 0
    while i < len(words):
        w = words[i]
        for n in range(min(_MAX_PHRASE, len(words) - i), 0, -1):
            tok = _LEXICON.get(tuple(words[i:i + n]))
            if tok is not None:
                if tok.kind != "filler":
                    out.append(tok)
                i += n
                break
        else:
            if w in _POSITION_WORDS:
                # A run of position words (with "corner", "side", ... between) is one cell.
                j, run = i, []
                while j < len(words) and (words[j] in _POSITION_WORDS or
                                          words[j] in POSITION_FILLER):
                    if words[j] in _POSITION_WORDS:
                        run.append(words[j])
                    j += 1
                out.append(_Tok("pos", _position(run, prompt)))
                i = j
            elif w in FILLER:
                i += 1
            else:
                raise ValueError(
                    f"cannot read prompt {prompt!r}: unknown word {w!r} (shapes: "
                    f"{', '.join(WORLD.all_shapes)}; colours: {', '.join(WORLD.palette)})")
    return out


# -- binding ----------------------------------------------------------------------------------

@dataclass
class _Obj:
    shape: str | None = None
    plural: bool = False
    attrs: dict[str, object] = field(default_factory=dict)


def _objects(tokens: list[_Tok], prompt: str) -> tuple[list[_Obj], list[tuple[str, str, int]],
                                                        bool]:
    objects: list[_Obj] = []
    pending = _Obj()
    relations: list[tuple[str, str, int]] = []  # (rel|rev, relation, objects seen so far)
    after_shape = False
    exact = False

    def give(key: str, value: object) -> None:
        # Trailing words describe the shape just named, unless it already has that attribute.
        if after_shape and key not in objects[-1].attrs and key != "count":
            objects[-1].attrs[key] = value
        elif key in pending.attrs and pending.attrs[key] != value:
            raise ValueError(f"prompt {prompt!r}: two {key}s ({pending.attrs[key]}, {value}) "
                             "for one shape")
        else:
            pending.attrs[key] = value

    for tok in tokens:
        if tok.kind == "shape":
            obj = _Obj(tok.value, tok.plural, dict(pending.attrs))
            objects.append(obj)
            pending = _Obj()
            after_shape = True
        elif tok.kind in ("color", "size", "pos"):
            key = {"color": "color", "size": "size", "pos": "position"}[tok.kind]
            give(key, tok.value)
        elif tok.kind == "count":
            pending.attrs["count"] = tok.value
            if tok.plural:  # a digit
                exact = True
            after_shape = False
        elif tok.kind == "exact":
            exact = True
        elif tok.kind in ("rel", "rev"):
            relations.append((tok.kind, tok.value, len(objects)))
            after_shape = False
        elif tok.kind == "sep":
            after_shape = False
    leftover = {k: v for k, v in pending.attrs.items() if k != "count"}
    if leftover or "count" in pending.attrs:
        if not objects or "count" in pending.attrs or \
                any(k in objects[-1].attrs for k in leftover):
            raise ValueError(f"prompt {prompt!r}: "
                             f"{', '.join(str(v) for v in pending.attrs.values())} "
                             "belongs to no shape")
        objects[-1].attrs.update(leftover)
    return objects, relations, exact


def _spec_object(o: _Obj, prompt: str) -> ObjectSpec:
    color = o.attrs.get("color")
    if color is not None and color not in WORLD.object_colors:
        raise ValueError(f"prompt {prompt!r}: {color} is a background colour only; object "
                         f"colours are {', '.join(WORLD.object_colors)}")
    return ObjectSpec(o.shape, color, o.attrs.get("size"), o.attrs.get("position"))


def parse_prompt(text: str) -> PromptSpec:
    """What a Shapes World prompt asks for; ValueError for anything outside the contract."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError("empty prompt")
    normal, background = _take_background(_normalise(text), text)
    objects, relations, exact = _objects(_tokens(normal, text), text)
    if not objects:
        raise ValueError(f"prompt {text!r} names no shape; shapes are "
                         f"{', '.join(WORLD.all_shapes)}")
    if len(objects) > 2:
        raise ValueError(f"prompt {text!r} names {len(objects)} shapes; a prompt has one or two")
    specs = tuple(_spec_object(o, text) for o in objects)

    if relations:
        if len(relations) > 1 or len(objects) != 2:
            raise ValueError(f"prompt {text!r}: a relation needs exactly two shapes and one "
                             "relation between them")
        form, relation, seen = relations[0]
        if form == "rel" and seen != 1:
            raise ValueError(f"prompt {text!r}: the relation must stand between the two shapes")
        if form == "rev":
            specs = (specs[1], specs[0])  # "B with A to its left": A is the subject
        if any(o.plural or o.attrs.get("count", 1) != 1 for o in objects):
            raise ValueError(f"prompt {text!r}: relations are between single objects")
        return PromptSpec("position", specs, relation=relation, background=background)

    counts = [o.attrs.get("count") for o in objects]
    counting = any(o.plural for o in objects) or any(c is not None and c > 1 for c in counts) \
        or (exact and counts[0] == 1)
    if counting:
        if len(objects) != 1:
            raise ValueError(f"prompt {text!r}: counting prompts name one kind of shape")
        count = counts[0]
        if count is None:
            raise ValueError(f"prompt {text!r}: how many {WORLD.plurals[objects[0].shape]}?")
        if count not in WORLD.counts:
            raise ValueError(f"prompt {text!r}: count {count} is outside the contract's "
                             f"{', '.join(map(str, WORLD.counts))}")
        return PromptSpec("counting", specs, count=count, background=background)

    if len(specs) == 1:
        kind = "colors" if specs[0].color else "single_object"
        return PromptSpec(kind, specs, background=background)
    kind = "color_attr" if all(o.color for o in specs) else "two_object"
    return PromptSpec(kind, specs, background=background)
