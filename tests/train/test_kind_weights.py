import torch

from fluxai.train.flow import draw_examples, scene_weights

KINDS = ["position", "colors", "colors", "position", "counting", "colors"]


def test_unweighted_recipes_draw_every_scene_alike():
    assert scene_weights(KINDS, {}) is None


def test_unnamed_kinds_weigh_one():
    assert scene_weights(KINDS, {"position": 3.0}).tolist() == [3.0, 1, 1, 3.0, 1, 1]


def test_a_weighted_kind_is_drawn_in_proportion_to_its_share_of_the_weight():
    weights = scene_weights(KINDS, {"position": 3.0, "colors": 0.5})
    drawn = draw_examples(len(KINDS), 60_000, weights, torch.Generator().manual_seed(0))
    share = (torch.tensor([KINDS[i] == "position" for i in drawn.tolist()]).float().mean())
    assert abs(share.item() - 6.0 / 8.5) < 0.01


def test_kinds_left_unnamed_are_still_drawn():
    weights = scene_weights(KINDS, {"position": 10.0})
    drawn = draw_examples(len(KINDS), 2000, weights, torch.Generator().manual_seed(1))
    assert {KINDS[i] for i in drawn.tolist()} == {"position", "colors", "counting"}
