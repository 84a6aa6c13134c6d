import torch
from torch import nn

from fluxai.config import PRESETS
from fluxai.model.autoencoder import AutoEncoder
from fluxai.perf.vae import decode_tiled, disable_vae_tricks, enable_vae_slicing


def test_slicing_decodes_a_batch_as_a_whole_up_to_round_off():
    torch.manual_seed(0)
    vae = AutoEncoder(PRESETS["flux-test-dev"].autoencoder).eval()
    z = torch.randn(3, 16, 4, 4)
    with torch.no_grad():
        expected = vae.decode(z)
        enable_vae_slicing(vae)
        got = vae.decode(z)
        disable_vae_tricks(vae)
    # Same maths; CPU convolution kernels block a batch of 1 differently from a batch of 3.
    assert (got - expected).abs().max() < 1e-5


class _LocalDecoder(nn.Module):
    """A decoder with no spatial context (nearest upsampling): tiles can reassemble it exactly."""

    def forward(self, z):
        return torch.nn.functional.interpolate(z[:, :3], scale_factor=8.0, mode="nearest")


def test_tiles_blend_back_into_the_whole_image_for_a_local_decoder():
    vae = AutoEncoder(PRESETS["flux-test-dev"].autoencoder)
    vae.decoder = _LocalDecoder()
    z = torch.randn(2, 16, 40, 56)
    whole = vae.decoder(z)
    tiled = decode_tiled(vae, z, tile=16, overlap=4)
    assert tiled.shape == whole.shape
    assert torch.allclose(tiled, whole, atol=1e-6)


def test_an_image_smaller_than_a_tile_is_decoded_in_one_piece():
    torch.manual_seed(0)
    vae = AutoEncoder(PRESETS["flux-test-dev"].autoencoder).eval()
    z = torch.randn(1, 16, 8, 8)
    with torch.no_grad():
        assert torch.equal(decode_tiled(vae, z, tile=8, overlap=2), vae.decoder(z))
