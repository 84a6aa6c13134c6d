import pytest
import torch

from fluxai.train.precision import autocast, bf16_is_native, uses_bf16

CPU = torch.device("cpu")


def test_fp32_never_autocasts():
    assert not uses_bf16("fp32", CPU)


def test_bf16_always_autocasts():
    assert uses_bf16("bf16", CPU)


def test_auto_autocasts_exactly_where_bf16_is_native():
    assert uses_bf16("auto", CPU) == bf16_is_native(CPU)


def test_an_unknown_precision_names_the_allowed_ones():
    with pytest.raises(ValueError, match="auto, bf16, fp32"):
        uses_bf16("fp16", CPU)


def test_the_autocast_context_runs_matmuls_in_bf16_when_asked():
    a = torch.randn(4, 4)
    with autocast("bf16", CPU):
        assert (a @ a).dtype == torch.bfloat16
    with autocast("fp32", CPU):
        assert (a @ a).dtype == torch.float32
