import pytest

from fluxai.config import PRESETS
from fluxai.perf.memory import ORDER, estimate_peak_bytes, get_memory_preset, oom_advice

GiB = 1024**3
DEV = PRESETS["flux-dev"]


def estimate(preset, size=1024):
    return estimate_peak_bytes(DEV.transformer, DEV.autoencoder, preset, size, size)


def test_each_preset_needs_less_than_the_one_before():
    needs = [estimate(p) for p in ORDER]
    assert needs == sorted(needs, reverse=True)


def test_the_8gb_preset_plans_dev_at_1024_within_8_gib():
    assert estimate("8gb") <= 8 * GiB
    assert estimate("max") > 20 * GiB  # the bf16 weights alone are ~22 GiB


def test_oom_advice_names_the_first_preset_that_fits():
    advice = oom_advice(DEV.transformer, DEV.autoencoder, "max", 1024, 1024, 1, 12 * GiB, 2.0)
    assert "--memory low" in advice or "--memory 8gb" in advice
    assert advice.count("\n") == 0


def test_oom_advice_when_nothing_fits_suggests_smaller_work():
    advice = oom_advice(DEV.transformer, DEV.autoencoder, "8gb", 1024, 1024, 1, GiB // 4, 2.0)
    assert "smaller --size" in advice


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown memory preset 'tiny'; choose one of max"):
        get_memory_preset("tiny")
