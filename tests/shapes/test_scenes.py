import numpy as np
import pytest

from fluxai.shapes.scenes import LAYOUTS, is_held_out, place, sample_spec
from fluxai.shapes.world import WORLD, ObjectSpec, PromptSpec, relation_holds


def _scenes(kind, n=150, size=(128, 128), layout="free"):
    rng = np.random.default_rng(7)
    for _ in range(n):
        spec = sample_spec(rng, kind)
        yield spec, place(spec, *size, rng, layout)


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("kind", WORLD.kinds)
def test_placed_objects_keep_the_border_margin_and_never_overlap(kind, layout):
    for _, scene in _scenes(kind, layout=layout):
        margin = WORLD.border_margin * 128
        for o in scene.objects:
            assert o.cx - o.r >= margin and o.cx + o.r <= 128 - margin
            assert o.cy - o.r >= margin and o.cy + o.r <= 128 - margin
        for i, a in enumerate(scene.objects):
            for b in scene.objects[i + 1:]:
                assert abs(a.cx - b.cx) >= a.r + b.r or abs(a.cy - b.cy) >= a.r + b.r


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("kind", WORLD.kinds)
def test_scenes_satisfy_their_spec(kind, layout):
    for spec, scene in _scenes(kind, layout=layout):
        assert scene.background != "gray" or all(o.color != "gray" for o in scene.objects)
        assert all(o.color != scene.background for o in scene.objects)
        if kind == "counting":
            assert len(scene.objects) == spec.count
            assert {o.shape for o in scene.objects} == {spec.objects[0].shape}
        else:
            assert [o.shape for o in scene.objects] == [o.shape for o in spec.objects]
        for want, got in zip(spec.objects, scene.objects, strict=False):
            assert want.color in (None, got.color)
        if spec.relation:
            assert relation_holds(scene.objects[0], scene.objects[1], spec.relation, 128)
        if spec.background:
            assert scene.background == spec.background


def test_named_sizes_and_grid_cells_are_honoured():
    rng = np.random.default_rng(0)
    spec = PromptSpec("colors", (ObjectSpec("circle", "red", "small", "top left"),))
    for _ in range(50):
        o = place(spec, 128, 128, rng).objects[0]
        assert o.r == pytest.approx(0.08 * 128, rel=WORLD.size_jitter + 1e-9)
        assert abs(o.cx - 128 / 6) <= WORLD.position_jitter * 128 + 1e-9
        assert abs(o.cy - 128 / 6) <= WORLD.position_jitter * 128 + 1e-9


def _cell_of(o, side=128):
    """The grid cell whose jittered centre box holds the object's centre."""
    jitter = WORLD.position_jitter * side + 1e-9
    for name, (col, row) in WORLD.positions.items():
        if abs(o.cx - (2 * col + 1) / 6 * side) <= jitter \
                and abs(o.cy - (2 * row + 1) / 6 * side) <= jitter:
            return name
    return None


@pytest.mark.parametrize(("count", "cells"), [
    (1, ["center"]), (2, ["left", "right"]), (3, ["left", "center", "right"]),
    (4, ["top left", "top right", "bottom left", "bottom right"])])
def test_canonical_layout_puts_counted_objects_in_fixed_cells(count, cells):
    spec = PromptSpec("counting", (ObjectSpec("star"),), count=count)
    rng = np.random.default_rng(3)
    for _ in range(20):
        scene = place(spec, 128, 128, rng, "canonical")
        assert sorted(_cell_of(o) for o in scene.objects) == sorted(cells)


def test_canonical_layout_places_related_objects_by_the_relation():
    rng = np.random.default_rng(4)
    for relation, cells in [("left of", ["left", "right"]), ("below", ["bottom", "top"])]:
        spec = PromptSpec("position", (ObjectSpec("star"), ObjectSpec("circle")),
                          relation=relation)
        scene = place(spec, 128, 128, rng, "canonical")
        assert [_cell_of(o) for o in scene.objects] == cells


def test_canonical_layout_draws_a_lone_object_large_and_pairs_medium():
    rng = np.random.default_rng(5)
    lone = place(PromptSpec("single_object", (ObjectSpec("cross"),)), 128, 128, rng,
                 "canonical")
    pair = place(PromptSpec("two_object", (ObjectSpec("cross"), ObjectSpec("star"))), 128, 128,
                 rng, "canonical")
    assert lone.objects[0].r == pytest.approx(WORLD.sizes["large"] * 128,
                                              rel=WORLD.size_jitter + 1e-9)
    assert all(o.r == pytest.approx(WORLD.sizes["medium"] * 128, rel=WORLD.size_jitter + 1e-9)
               for o in pair.objects)


def test_canonical_layout_keeps_what_the_prompt_names():
    rng = np.random.default_rng(6)
    spec = PromptSpec("colors", (ObjectSpec("circle", "red", "small", "top right"),))
    o = place(spec, 128, 128, rng, "canonical").objects[0]
    assert _cell_of(o) == "top right"
    assert o.r == pytest.approx(WORLD.sizes["small"] * 128, rel=WORLD.size_jitter + 1e-9)


def test_canonical_layout_never_gives_a_named_cell_to_another_object():
    rng = np.random.default_rng(8)
    spec = PromptSpec("two_object", (ObjectSpec("star", position="right"), ObjectSpec("circle")))
    for _ in range(20):
        scene = place(spec, 128, 128, rng, "canonical")
        assert [_cell_of(o) for o in scene.objects] == ["right", "left"]


def test_an_unknown_layout_is_refused():
    spec = PromptSpec("single_object", (ObjectSpec("circle"),))
    with pytest.raises(ValueError, match="layout must be one of free, canonical"):
        place(spec, 128, 128, np.random.default_rng(0), "grid")


def test_training_split_never_contains_a_held_out_composition():
    rng = np.random.default_rng(1)
    assert not any(is_held_out(sample_spec(rng, "color_attr")) for _ in range(2000))


def test_heldout_split_contains_held_out_compositions():
    rng = np.random.default_rng(1)
    assert sum(is_held_out(sample_spec(rng, "color_attr", "heldout")) for _ in range(200)) > 50


def test_non_square_canvases_are_supported():
    for spec, scene in _scenes("counting", n=30, size=(192, 128)):
        assert (scene.width, scene.height) == (192, 128)
        assert len(scene.objects) == spec.count
