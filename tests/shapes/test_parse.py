"""`parse_prompt`: a Shapes World prompt read back into exactly what it asks for."""

import numpy as np
import pytest

from fluxai.shapes.captions import caption
from fluxai.shapes.parse import parse_prompt
from fluxai.shapes.scenes import sample_spec
from fluxai.shapes.world import ObjectSpec, PromptSpec


def single_or_count_one(spec: PromptSpec) -> PromptSpec:
    """Captions phrase counting-with-one ("one square", "a single square") and a single object
    ("one square") alike; the parser reads those as a single object, so compare modulo that."""
    if spec.kind == "counting" and spec.count == 1:
        kind = "colors" if spec.objects[0].color else "single_object"
        return PromptSpec(kind, spec.objects, background=spec.background)
    return spec


@pytest.mark.parametrize("split", ["train", "heldout"])
def test_captions_round_trip_to_their_spec(split):
    rng = np.random.default_rng(7)
    wrong = []
    for _ in range(2500):
        spec = sample_spec(rng, split=split)
        text = caption(spec, rng, split)
        got = parse_prompt(text)
        if single_or_count_one(got) != single_or_count_one(spec):
            wrong.append((text, spec, got))
    assert not wrong, f"{len(wrong)} captions misread, e.g. {wrong[:3]}"


def obj(shape, color=None, size=None, position=None):
    return ObjectSpec(shape, color, size, position)


@pytest.mark.parametrize("text, spec", [
    ("a star", PromptSpec("single_object", (obj("star"),))),
    ("a green triangle", PromptSpec("colors", (obj("triangle", "green"),))),
    ("a circle that is red", PromptSpec("colors", (obj("circle", "red"),))),
    ("a square colored red", PromptSpec("colors", (obj("square", "red"),))),
    ("a circle and a cross", PromptSpec("two_object", (obj("circle"), obj("cross")))),
    ("a red square and a blue star",
     PromptSpec("color_attr", (obj("square", "red"), obj("star", "blue")))),
    ("a circle that is red and a blue square",
     PromptSpec("color_attr", (obj("circle", "red"), obj("square", "blue")))),
    ("three squares", PromptSpec("counting", (obj("square"),), count=3)),
    ("3 squares", PromptSpec("counting", (obj("square"),), count=3)),
    ("two red crosses", PromptSpec("counting", (obj("cross", "red"),), count=2)),
    ("a diamond to the left of a circle",
     PromptSpec("position", (obj("diamond"), obj("circle")), relation="left of")),
    ("a red star above a blue circle",
     PromptSpec("position", (obj("star", "red"), obj("circle", "blue")), relation="above")),
    ("a square on top of a triangle",
     PromptSpec("position", (obj("square"), obj("triangle")), relation="above")),
    ("a star beneath a circle", PromptSpec("position", (obj("star"), obj("circle")),
                                           relation="below")),
    ("a small yellow circle in the top left corner on a black background",
     PromptSpec("colors", (obj("circle", "yellow", "small", "top left"),), background="black")),
    ("a large star at the top", PromptSpec("single_object", (obj("star", None, "large", "top"),))),
    ("a cross on the right, black background",
     PromptSpec("single_object", (obj("cross", None, None, "right"),), background="black")),
    ("a hexagon against a grey backdrop",
     PromptSpec("single_object", (obj("hexagon"),), background="gray")),
    ("a blue circle on white", PromptSpec("colors", (obj("circle", "blue"),), background="white")),
])
def test_reads_the_contracts_phrasings(text, spec):
    assert parse_prompt(text) == spec


def test_binds_attributes_to_the_shape_they_describe_on_either_side():
    spec = parse_prompt("a small circle in the bottom right corner and a large red square "
                        "at the top")
    assert spec.objects == (obj("circle", None, "small", "bottom right"),
                            obj("square", "red", "large", "top"))


def test_relation_seen_from_the_second_object_swaps_the_subject():
    spec = parse_prompt("a circle with a red star to its left")
    assert spec.objects == (obj("star", "red"), obj("circle"))
    assert spec.relation == "left of"


def test_an_exact_count_of_one_is_counting_but_one_alone_is_an_object():
    assert parse_prompt("exactly one star") == PromptSpec("counting", (obj("star"),), count=1)
    assert parse_prompt("1 star") == PromptSpec("counting", (obj("star"),), count=1)
    assert parse_prompt("one star") == PromptSpec("single_object", (obj("star"),))


@pytest.mark.parametrize("text, message", [
    ("", "empty prompt"),
    ("a circle and a pentagon", "unknown word 'pentagon'"),
    ("a gray circle", "background colour only"),
    ("five stars", "count 5"),
    ("two circles and a square", "one kind of shape"),
    ("stars", "how many"),
    ("a circle, a square and a star", "3 shapes"),
    ("a red circle above", "exactly two shapes"),
    ("a red blue circle", "two colors"),
    ("a circle on a black background on a white background", "several backgrounds"),
    ("a dog", "unknown word 'dog'"),
])
def test_rejects_what_the_contract_cannot_draw_with_a_clear_message(text, message):
    with pytest.raises(ValueError, match=message):
        parse_prompt(text)
