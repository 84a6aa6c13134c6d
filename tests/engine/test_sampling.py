import pytest
import torch

from fluxai.sampling import (
    check_size,
    image_ids,
    img2img_start,
    latent_shape,
    make_noise,
    pack,
    schedule,
    time_shift_mu,
    unpack,
)


def test_pack_then_unpack_is_identity():
    x = torch.randn(2, 16, 8, 12)
    assert torch.equal(unpack(pack(x), 8, 12), x)


def test_pack_puts_each_2x2_patch_in_one_token_channel_major():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    tokens = pack(x)
    assert tokens.shape == (1, 4, 4)
    assert tokens[0, 0].tolist() == [0.0, 1.0, 4.0, 5.0]
    assert tokens[0, 1].tolist() == [2.0, 3.0, 6.0, 7.0]


def test_image_ids_are_row_and_column_of_each_token():
    ids = image_ids(4, 6, batch=2, device="cpu")
    assert ids.shape == (2, 6, 3)
    assert ids[0, :, 0].eq(0).all()
    assert ids[0, 4].tolist() == [0.0, 1.0, 1.0]


def test_time_shift_mu_runs_from_half_at_256_tokens_to_1_15_at_4096():
    assert time_shift_mu(256) == pytest.approx(0.5)
    assert time_shift_mu(4096) == pytest.approx(1.15)


def test_unshifted_schedule_is_linear_from_one_to_zero():
    assert schedule(4, 4096, shift=False) == [1.0, 0.75, 0.5, 0.25, 0.0]


def test_shift_keeps_more_steps_at_high_noise():
    shifted = schedule(4, 4096, shift=True)
    assert shifted[0] == 1.0 and shifted[-1] == 0.0
    assert all(s > u for s, u in zip(shifted[1:-1], [0.75, 0.5, 0.25], strict=True))


def test_schedule_refuses_zero_steps():
    with pytest.raises(ValueError, match="at least 1"):
        schedule(0, 256, shift=False)


def test_sizes_must_be_multiples_of_16_and_the_error_names_the_nearest():
    check_size(128, 64)
    with pytest.raises(ValueError, match="96 or 112"):
        check_size(100, 128)


def test_latent_shape_of_a_1024_image_is_128_square():
    assert latent_shape(1, 16, 1024, 1024, downscale=8) == (1, 16, 128, 128)


def test_noise_for_a_seed_is_the_same_on_every_call():
    a = make_noise((1, 4, 8, 8), torch.Generator().manual_seed(3), torch.float32, "cpu")
    b = make_noise((1, 4, 8, 8), torch.Generator().manual_seed(3), torch.float32, "cpu")
    assert torch.equal(a, b)


def test_noise_from_generator_list_gives_each_image_its_own_seed():
    gens = [torch.Generator().manual_seed(s) for s in (5, 6)]
    both = make_noise((2, 4, 8, 8), gens, torch.float32, "cpu")
    alone = make_noise((1, 4, 8, 8), torch.Generator().manual_seed(6), torch.float32, "cpu")
    assert torch.equal(both[1:], alone)


def test_img2img_strength_skips_the_first_steps():
    sigmas = schedule(10, 256, shift=False)
    assert img2img_start(sigmas, 1.0) == 0
    assert img2img_start(sigmas, 0.6) == 4
    with pytest.raises(ValueError):
        img2img_start(sigmas, 1.5)
