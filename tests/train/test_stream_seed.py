import copy

import torch

from fluxai.config import FluxConfig
from fluxai.model.transformer import Flux
from fluxai.train.seeds import stream_seed, weights_fingerprint

CONFIG = FluxConfig(in_channels=16, out_channels=16, vec_in_dim=32, context_in_dim=32,
                    hidden_size=32, num_heads=2, depth=1, depth_single_blocks=1,
                    axes_dim=(4, 6, 6), guidance_embed=False)


def _model(seed: int) -> Flux:
    torch.manual_seed(seed)
    return Flux(CONFIG)


def test_a_from_scratch_run_keeps_its_recorded_stream():
    assert stream_seed(11, 500, None) == 511


def test_a_continuation_does_not_replay_the_stream_its_init_was_trained_on():
    assert stream_seed(0, 0, _model(0)) != stream_seed(0, 0, None)


def test_continuations_of_different_weights_draw_different_streams():
    assert stream_seed(0, 0, _model(0)) != stream_seed(0, 0, _model(1))


def test_the_same_init_gives_the_same_stream_so_a_rerun_reproduces():
    model = _model(0)
    assert stream_seed(0, 250, model) == stream_seed(0, 250, copy.deepcopy(model))


def test_resuming_later_in_a_continuation_starts_a_new_stream():
    model = _model(0)
    assert stream_seed(0, 0, model) != stream_seed(0, 250, model)


def test_the_fingerprint_sees_a_single_changed_weight():
    model, changed = _model(0), _model(0)
    with torch.no_grad():
        next(changed.parameters()).view(-1)[0] += 1e-3
    assert weights_fingerprint(model) != weights_fingerprint(changed)


def test_a_fingerprint_stands_for_the_weights_it_was_taken_from():
    model = _model(0)
    assert stream_seed(13, 7, model) == stream_seed(13, 7, weights_fingerprint(model))
