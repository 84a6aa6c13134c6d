import json
from pathlib import Path

import pytest

from fluxai.shapes.world import CONTRACT_PATH, WORLD

SHARED = Path(__file__).resolve().parents[3] / "shared" / "shapes-world.json"


@pytest.mark.skipif(not SHARED.is_file(), reason="the shared contract is not beside the project")
def test_vendored_contract_equals_the_shared_one():
    assert json.loads(CONTRACT_PATH.read_text()) == json.loads(SHARED.read_text())


def test_world_exposes_the_contract_numbers_by_name():
    assert WORLD.star_inner_ratio == json.loads(CONTRACT_PATH.read_text())["star_inner_ratio"]
    assert "hexagon" in WORLD.all_shapes and "hexagon" not in WORLD.shapes
    assert "gray" not in WORLD.object_colors
