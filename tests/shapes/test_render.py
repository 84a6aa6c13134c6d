import numpy as np
import pytest

from fluxai.shapes.render import render, shape_mask
from fluxai.shapes.world import WORLD, PlacedObject, Scene


def _area(shape: str, r: float = 40.0) -> float:
    return float(shape_mask(shape, 64, 64, r, 128, 128, supersample=8).sum()) / (r * r)


@pytest.mark.parametrize(("shape", "expected"), [
    ("circle", np.pi),
    ("square", 4.0),
    ("triangle", 2.0),  # half of the 2r x 2r box
    ("diamond", 2.0),
    ("cross", 2 * (2 * 0.8) - 0.8 * 0.8),  # two 2r x 0.8r bars minus their overlap
    ("hexagon", 1.5 * np.sqrt(3)),
])
def test_shape_areas_follow_the_contract_geometry(shape, expected):
    assert _area(shape) == pytest.approx(expected, rel=0.01)


def test_star_has_one_point_straight_up_and_inner_radius_from_the_contract():
    mask = shape_mask("star", 64, 64, 40, 128, 128, supersample=8)
    column = mask[:, 64]
    top = np.nonzero(column > 0.5)[0].min()
    assert top == pytest.approx(64 - 40, abs=1)
    # Straight down from the centre lies the inner vertex between the two lower points.
    bottom = np.nonzero(column > 0.5)[0].max() + 1
    assert bottom - 64 == pytest.approx(WORLD.star_inner_ratio * 40, abs=1)


def test_render_paints_background_and_objects_in_palette_colours():
    scene = Scene(128, 96, "black", [PlacedObject("square", "red", 40, 40, 10)])
    image = render(scene)
    assert image.shape == (96, 128, 3)
    assert tuple(image[0, 0]) == WORLD.palette["black"]
    assert tuple(image[40, 40]) == WORLD.palette["red"]


def test_unknown_shape_is_refused_with_the_known_ones():
    with pytest.raises(ValueError, match="known: circle"):
        shape_mask("blob", 10, 10, 5, 32, 32)
