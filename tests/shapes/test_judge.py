"""The judge: finds objects from the contract alone and scores images per kind."""

import numpy as np
import pytest
from PIL import Image

from fluxai.shapes.judge import (
    Analysis,
    Detected,
    analyse,
    cell_of,
    detect,
    judge,
    judge_analysis,
    size_of,
)
from fluxai.shapes.render import render
from fluxai.shapes.scenes import place, sample_spec
from fluxai.shapes.world import WORLD, ObjectSpec, PlacedObject, PromptSpec, Scene


def obj(shape, color=None, size=None, position=None):
    return ObjectSpec(shape, color, size, position)


def truth(scene: Scene) -> Analysis:
    """What a perfect detector would report: the scene's own objects."""
    objects = [Detected(o.shape, o.color, o.cx, o.cy, 0, (0, 0, 0, 0), 1.0, o.r)
               for o in scene.objects]
    return Analysis(scene.width, scene.height, scene.background, objects)


def ground_truth_accuracy(width: int, height: int, per_kind: int, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    scores = {}
    for kind in WORLD.kinds:
        hits = []
        for i in range(per_kind):
            spec = sample_spec(rng, kind, split="heldout" if i % 2 else "train")
            verdict = judge(render(place(spec, width, height, rng)), spec)
            hits.append(verdict.correct)
        scores[kind] = float(np.mean(hits))
    return scores


@pytest.mark.parametrize("width, height, per_kind", [(128, 128, 60), (256, 256, 25),
                                                      (160, 128, 25)])
def test_ground_truth_renders_score_at_least_098_per_kind(width, height, per_kind):
    scores = ground_truth_accuracy(width, height, per_kind, seed=width + height)
    assert all(s >= 0.98 for s in scores.values()), scores


@pytest.mark.slow
@pytest.mark.parametrize("width, height", [
    (128, 128), (256, 256), (160, 128),
    # Known gap: at 64² a small shape is 10 px across and small stars/diamonds and
    # hexagons/circles get confused (counting ~0.93). Strict, so a fix shows up as a pass.
    pytest.param(64, 64, marks=pytest.mark.xfail(strict=True, reason="small shapes at 64²")),
])
def test_ground_truth_renders_score_100_percent_on_many_scenes(width, height):
    scores = ground_truth_accuracy(width, height, per_kind=300, seed=1)
    assert all(s == 1.0 for s in scores.values()), scores


def test_a_render_judged_against_other_scenes_prompts_agrees_with_its_ground_truth():
    """Pixels or the scene's own objects, the verdict is the same: so a render paired with a
    prompt it does not satisfy fails, and one it happens to satisfy passes."""
    rng = np.random.default_rng(3)
    specs = [sample_spec(rng) for _ in range(120)]
    scenes = [place(s, 128, 128, rng) for s in specs]
    disagree, failed = [], 0
    for i, scene in enumerate(scenes):
        image = render(scene)
        for other in specs[i + 1:i + 4]:
            expected = judge_analysis(truth(scene), other).correct
            got = judge(image, other).correct
            failed += not got
            if got != expected:
                disagree.append((other, scene))
    assert failed > 250  # most pairings must fail
    assert len(disagree) <= 3, disagree[:3]


def canvas(*objects, background="white", size=128):
    return render(Scene(size, size, background, list(objects)))


def test_detect_finds_each_shape_with_its_colour_centre_and_radius():
    for shape in WORLD.all_shapes:
        for background, color in (("white", "red"), ("black", "yellow"), ("gray", "blue")):
            image = canvas(PlacedObject(shape, color, 60.3, 70.6, 20.0), background=background)
            # Only the object's colour: an anti-aliased edge may quantise to a third colour.
            (found,) = [d for d in detect(image) if d.color == color]
            assert (found.shape, found.color) == (shape, color)
            assert abs(found.cx - 60.3) < 1.5 and abs(found.cy - 70.6) < 1.5, (shape, found)
            assert abs(found.r - 20.0) < 1.5, (shape, found)


def test_background_is_the_most_frequent_background_colour():
    image = canvas(PlacedObject("square", "white", 64, 64, 30), background="gray")
    a = analyse(image)
    assert a.background == "gray"
    assert [(d.shape, d.color) for d in a.objects] == [("square", "white")]


def test_components_below_the_minimum_area_are_dropped():
    area = WORLD.min_component_area * 128 * 128
    tiny_r = np.sqrt(area / 4) * 0.8  # a square of side 2r with fewer pixels than the minimum
    image = canvas(PlacedObject("square", "red", 30, 30, tiny_r),
                   PlacedObject("circle", "blue", 90, 90, 15))
    assert [d.shape for d in detect(image)] == ["circle"]


def test_accepts_pil_and_float_images():
    image = canvas(PlacedObject("star", "green", 64, 64, 25))
    pil = detect(Image.fromarray(image))
    floats = detect(image.astype(np.float32) / 255.0)
    assert [(d.shape, d.color) for d in pil] == [(d.shape, d.color) for d in floats] == [
        ("star", "green")]


# -- rejections, one reason each -------------------------------------------------------------

RED_SQUARE = PlacedObject("square", "red", 40, 64, 16)
BLUE_STAR = PlacedObject("star", "blue", 96, 64, 16)


def test_wrong_colour_is_rejected():
    verdict = judge(canvas(RED_SQUARE), PromptSpec("colors", (obj("square", "green"),)))
    assert not verdict.correct and "no green square" in verdict.reason


def test_wrong_shape_is_rejected():
    assert not judge(canvas(RED_SQUARE), PromptSpec("single_object", (obj("circle"),))).correct
    assert judge(canvas(RED_SQUARE), PromptSpec("single_object", (obj("square"),))).correct


def test_swapped_colours_are_rejected_for_colour_attribution():
    image = canvas(RED_SQUARE, BLUE_STAR)
    good = PromptSpec("color_attr", (obj("square", "red"), obj("star", "blue")))
    swapped = PromptSpec("color_attr", (obj("square", "blue"), obj("star", "red")))
    assert judge(image, good).correct
    assert not judge(image, swapped).correct


def test_two_objects_need_both():
    image = canvas(RED_SQUARE)
    assert not judge(image, PromptSpec("two_object", (obj("square"), obj("star")))).correct
    assert judge(canvas(RED_SQUARE, BLUE_STAR),
                 PromptSpec("two_object", (obj("square"), obj("star")))).correct


def test_counting_needs_the_exact_count():
    squares = [PlacedObject("square", "red", x, 64, 10) for x in (20, 50, 80, 110)]
    three = PromptSpec("counting", (obj("square"),), count=3)
    assert judge(canvas(*squares[:3]), three).correct
    assert not judge(canvas(*squares), three).correct
    verdict = judge(canvas(*squares[:2]), three)
    assert not verdict.correct and "found 2 squares" in verdict.reason


def test_counting_with_a_colour_needs_every_one_of_that_colour():
    squares = [PlacedObject("square", c, x, 64, 10) for x, c in ((20, "red"), (60, "red"),
                                                                  (100, "blue"))]
    assert not judge(canvas(*squares), PromptSpec("counting", (obj("square", "red"),),
                                                  count=3)).correct


@pytest.mark.parametrize("relation, correct", [("left of", True), ("right of", False),
                                               ("above", False), ("below", False)])
def test_relations_compare_centres_with_the_contracts_margin(relation, correct):
    spec = PromptSpec("position", (obj("square"), obj("star")), relation=relation)
    assert judge(canvas(RED_SQUARE, BLUE_STAR), spec).correct is correct


def test_a_relation_within_the_margin_does_not_hold():
    near = PlacedObject("star", "blue", 40 + 0.08 * 128, 110, 12)  # dx under 0.1 S
    a = PlacedObject("square", "red", 40, 30, 12)
    spec = PromptSpec("position", (obj("square"), obj("star")), relation="left of")
    assert not judge(canvas(a, near), spec).correct
    assert judge(canvas(a, near), PromptSpec("position", (obj("square"), obj("star")),
                                             relation="above")).correct


def test_size_must_match_when_named():
    small = PlacedObject("circle", "red", 64, 64, 0.08 * 128)
    assert judge(canvas(small), PromptSpec("single_object", (obj("circle", size="small"),))).correct
    assert not judge(canvas(small),
                     PromptSpec("single_object", (obj("circle", size="medium"),))).correct


def test_size_bands_tolerate_a_pixel_but_not_the_next_size():
    s = 128
    for name, nominal in WORLD.sizes.items():
        for jitter in (-WORLD.size_jitter, 0.0, WORLD.size_jitter):
            r = nominal * s * (1 + jitter)
            assert size_of(r - 1, s) == name and size_of(r + 1, s) == name
    assert size_of(0.02 * s, s) is None


def test_grid_position_is_the_cell_of_the_centre():
    assert cell_of(10, 10, 128, 128) == "top left"
    assert cell_of(64, 64, 128, 128) == "center"
    assert cell_of(120, 64, 128, 128) == "right"
    assert cell_of(64, 127.9, 128, 128) == "bottom"
    star = PlacedObject("star", "red", 22, 22, 12)
    assert judge(canvas(star), PromptSpec("single_object", (obj("star", position="top left"),)))\
        .correct
    assert not judge(canvas(star),
                     PromptSpec("single_object", (obj("star", position="center"),))).correct


def test_wrong_background_is_rejected():
    spec = PromptSpec("colors", (obj("square", "red"),), background="black")
    verdict = judge(canvas(RED_SQUARE), spec)
    assert not verdict.correct and "background is white" in verdict.reason
