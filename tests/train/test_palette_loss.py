import torch

from fluxai.train.autoencoder import palette_cross_entropy, palette_tensor


def _flat(colour: torch.Tensor, size: int = 4) -> torch.Tensor:
    return colour[None, :, None, None].expand(1, 3, size, size).clone()


def test_an_exact_palette_reconstruction_costs_almost_nothing():
    palette = palette_tensor()
    target = _flat(palette[0])
    assert palette_cross_entropy(target, target, palette).max() < 0.01


def test_a_pixel_nearer_another_palette_colour_costs_more_than_one_nat():
    palette = palette_tensor()  # red, orange, ... in the contract's order
    target = _flat(palette[0])
    recon = target.clone()
    recon[:, :, 0, 0] = palette[1]  # this pixel would be judged orange
    ce = palette_cross_entropy(recon, target, palette)[0, 0]
    assert ce[0, 0] > 1.0 and ce[1:, 1:].max() < 0.01


def test_its_gradient_moves_a_pixel_towards_the_target_colour():
    palette = palette_tensor()
    target = _flat(palette[0], size=1)
    recon = ((palette[0] + palette[1]) / 2)[None, :, None, None].clone().requires_grad_()
    palette_cross_entropy(recon, target, palette).sum().backward()
    towards = (palette[0] - palette[1])  # the direction from orange to red
    assert (-recon.grad[0, :, 0, 0] @ towards) > 0
