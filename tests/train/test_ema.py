import pytest
import torch
from torch import nn

from fluxai.train.ema import EMA


def test_the_decay_warms_up_to_its_ceiling():
    ema = EMA(nn.Linear(2, 2), decay=0.999)
    assert ema.current_decay(0) == 0.1
    assert ema.current_decay(80) == pytest.approx(0.9)
    assert ema.current_decay(100_000) == 0.999


def test_an_update_moves_every_tensor_towards_the_model_by_one_minus_the_decay():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4))
    ema = EMA(model, decay=0.999)
    before = {k: v.clone() for k, v in ema.state_dict().items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    ema.update(model, step=8)  # decay (1 + 8) / (10 + 8) = 0.5
    for key, value in model.state_dict().items():
        assert torch.allclose(ema.state_dict()[key], 0.5 * before[key] + 0.5 * value), key


def test_copy_to_writes_the_average_into_the_model():
    model = nn.Linear(2, 2)
    ema = EMA(model, decay=0.5)
    with torch.no_grad():
        model.weight.zero_()
    ema.copy_to(model)
    assert torch.equal(model.weight, ema.state_dict()["weight"])
