import numpy as np
import pytest
import torch

from fluxai.shapes.parse import parse_prompt
from fluxai.shapes.world import ObjectSpec, PromptSpec
from fluxai.train.data import exchanged_caption
from fluxai.train.flow import exchange_loss, exchange_picks

STAR_ABOVE_CIRCLE = PromptSpec(
    "position", (ObjectSpec("star", "red"), ObjectSpec("circle", "blue")), relation="above")


def test_an_exchanged_caption_describes_the_scene_with_its_two_shapes_swapped():
    text = exchanged_caption(STAR_ABOVE_CIRCLE, np.random.default_rng(0))
    spec = parse_prompt(text)
    assert [(o.shape, o.color) for o in spec.objects] == [("circle", "red"), ("star", "blue")]
    assert spec.relation == "above"


@pytest.mark.parametrize("spec", [
    PromptSpec("single_object", (ObjectSpec("star"),)),
    PromptSpec("counting", (ObjectSpec("star"), ObjectSpec("star")), count=2),
    PromptSpec("color_attr", (ObjectSpec("star", "red"), ObjectSpec("star", "blue"))),
])
def test_scenes_without_two_distinct_shapes_have_no_exchanged_caption(spec):
    assert exchanged_caption(spec, np.random.default_rng(0)) == ""


def test_picks_are_only_examples_with_an_exchanged_caption_that_kept_their_own():
    exchanged = torch.tensor([5, -1, 7, 9, -1, 3])
    dropped = torch.tensor([False, False, False, True, False, False])
    picks = exchange_picks(exchanged, dropped, 40, torch.Generator().manual_seed(0))
    assert len(picks) == 40 and set(picks.tolist()) == {0, 2, 5}


def test_picks_do_not_repeat_while_enough_examples_qualify():
    exchanged = torch.arange(10)
    picks = exchange_picks(exchanged, torch.zeros(10, dtype=torch.bool), 8,
                           torch.Generator().manual_seed(0))
    assert len(set(picks.tolist())) == 8


def test_a_batch_without_exchanged_captions_picks_nothing():
    assert exchange_picks(torch.full((4,), -1), torch.zeros(4, dtype=torch.bool), 2,
                          torch.Generator()) is None


def test_the_loss_is_log_2_when_the_caption_order_is_ignored():
    own = torch.tensor([0.1, 0.3])
    loss = exchange_loss(own, own.clone(), torch.ones(2), 0.25)
    assert loss.item() == pytest.approx(np.log(2))


def test_the_loss_falls_as_the_exchanged_caption_predicts_worse():
    own, t = torch.tensor([0.1]), torch.ones(1)
    losses = [exchange_loss(own, own * (1 + g), t, 0.25).item() for g in (0.0, 0.25, 1.0)]
    assert losses[0] > losses[1] > losses[2] > 0


def test_the_loss_weighs_each_example_by_its_noise_level():
    own = torch.tensor([0.1, 0.1])
    low = exchange_loss(own, own, torch.tensor([0.2, 0.2]), 0.25)
    high = exchange_loss(own, own, torch.tensor([0.8, 0.8]), 0.25)
    assert high.item() == pytest.approx(4 * low.item())


def test_the_gradient_pushes_the_exchanged_prediction_away_from_the_target():
    own = torch.tensor([0.1], requires_grad=True)
    exchanged = torch.tensor([0.1], requires_grad=True)
    exchange_loss(own, exchanged, torch.ones(1), 0.25).backward()
    assert exchanged.grad.item() < 0 < own.grad.item()
