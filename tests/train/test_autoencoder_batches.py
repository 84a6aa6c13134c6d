import torch

from fluxai.train.autoencoder import object_mask, training_batch


def _canvas_with_one_square() -> torch.Tensor:
    images = torch.ones(4, 3, 64, 64)  # white background in [-1, 1]
    images[:, 0, 40:48, 8:16] = -1.0  # a cyan square near the bottom left
    return images


def test_a_batch_is_cut_into_crops_of_the_requested_size():
    batch = training_batch(_canvas_with_one_square(), 24, torch.Generator().manual_seed(0))
    assert batch.shape == (4, 3, 24, 24)


def test_the_first_half_of_a_batch_is_centred_on_objects():
    gen = torch.Generator().manual_seed(1)
    for _ in range(5):
        batch = training_batch(_canvas_with_one_square(), 24, gen)
        assert object_mask(batch[:2]).flatten(1).amax(1).tolist() == [1.0, 1.0]


def test_a_crop_as_large_as_the_canvas_keeps_the_whole_canvas():
    images = _canvas_with_one_square()
    assert torch.equal(training_batch(images, 64, torch.Generator()), images)
