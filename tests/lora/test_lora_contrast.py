"""Stand-ins: a new shape's examples redrawn with the known shape the model confuses it with,
to aim its flow targets away from it (latent contrast) and to hold the rest (twins)."""

import json

import numpy as np
import pytest
import torch

from fluxai.lora import read_lora_file
from fluxai.lora.data import nearest_known_shape, shapes_examples
from fluxai.lora.train import Trainer, make_config
from fluxai.pipeline import FluxPipeline
from fluxai.registry import random_preset
from fluxai.shapes import WORLD


def contrast_trainer(tmp_path, **kw):
    kw.setdefault("prior_fraction", 0.5)
    cfg = make_config(None, model="flux-test-dev", data="shapes:hexagon",
                      output=str(tmp_path / "run"), rank=2, steps=2, batch_size=2, resolution=32,
                      count=4, warmup=1, **kw)
    return Trainer(cfg, FluxPipeline(**random_preset("flux-test-dev")))


def test_stand_ins_redraw_the_shape_examples_and_leave_the_examples_alone():
    plain = shapes_examples("hexagon", 6, 64, seed=1, prior_fraction=0.5)
    twinned = shapes_examples("hexagon", 6, 64, seed=1, prior_fraction=0.5, stand_in="circle")
    same = [np.array_equal(a.image, b.image) for a, b in zip(plain, twinned, strict=True)]
    assert same == [True] * 6
    assert [len(e.twins) for e in twinned] == [0] * 3 + [len(WORLD.shapes)] * 3
    assert all(not np.array_equal(e.image, tw.image) for e in twinned[3:] for tw in e.twins)


def test_twins_show_every_known_shape_the_stand_in_first():
    twinned = shapes_examples("hexagon", 4, 64, seed=1, prior_fraction=0.5, stand_in="star")
    shapes = [tw.shape for tw in twinned[-1].twins]
    assert shapes[0] == "star" and sorted(shapes) == sorted(WORLD.shapes)


def test_stand_in_captions_say_the_same_in_the_same_words_of_the_known_shape():
    twinned = shapes_examples("hexagon", 12, 64, seed=2, prior_fraction=0.25, stand_in="circle")
    plural = dict(WORLD.raw["plurals"])
    for e in twinned[3:]:
        for tw in e.twins:
            words = e.caption.replace("hexagons", plural[tw.shape]).replace("hexagon", tw.shape)
            assert tw.caption == words
    assert all(not e.twins for e in twinned[:3])


def twin_batches(t, cache, monkeypatch):
    """(latents, caption rows, prior mask) of every batch `loss_on` sends to the model."""
    seen = []
    real = t.predict

    def recording(cache, xt, rows, times):
        seen.append(rows.clone())
        return real(cache, xt, rows, times)

    monkeypatch.setattr(t, "predict", recording)
    return seen


def all_twins(tmp_path, monkeypatch):
    """A trainer whose every example is a twin, its cache, bucket and recorded caption rows."""
    t = contrast_trainer(tmp_path, twin_fraction=1.0, caption_dropout=0.0, stand_in="circle",
                         prior_fraction=0.0)
    cache = t.prepare()
    (bucket,) = cache.latents
    return t, cache, cache.twins[bucket], twin_batches(t, cache, monkeypatch)


def test_twins_regress_the_base_models_velocity_for_the_twins_caption(tmp_path, monkeypatch):
    # Every example a twin: the loss is the distilled prior alone, zero while the adapter is.
    t, cache, twin_rows, seen = all_twins(tmp_path, monkeypatch)
    assert t.loss_on(cache).item() < 1e-10
    assert set(seen[-1].tolist()) <= set(twin_rows.flatten().tolist())


def test_twins_are_drawn_from_every_known_shape(tmp_path, monkeypatch):
    t, cache, twin_rows, seen = all_twins(tmp_path, monkeypatch)
    for _ in range(40):
        t.loss_on(cache)
    used = set(torch.cat(seen[1::2]).tolist())  # each loss: the distilled pass, the adapted
    columns = {k for k in range(twin_rows.shape[1]) if set(twin_rows[:, k].tolist()) & used}
    assert columns == set(range(len(WORLD.shapes)))


def test_latent_contrast_without_twins_draws_the_stand_in_alone(tmp_path):
    t = contrast_trainer(tmp_path, latent_contrast=1.0, stand_in="circle")
    cache = t.prepare()
    (bucket,) = cache.latents
    assert cache.twins[bucket].shape[1] == 1 and cache.stand_in == "circle"


def test_without_twins_the_examples_keep_their_own_captions(tmp_path, monkeypatch):
    t = contrast_trainer(tmp_path, latent_contrast=1.0, caption_dropout=0.0, stand_in="circle")
    cache = t.prepare()
    (bucket,) = cache.latents
    seen = twin_batches(t, cache, monkeypatch)
    t.loss_on(cache)
    assert set(seen[-1].tolist()) <= set(cache.captions[bucket])


def test_flow_targets_are_pushed_away_from_the_stand_ins_latents(tmp_path):
    t = contrast_trainer(tmp_path, latent_contrast=1.5, stand_in="circle")
    cache = t.prepare()
    (bucket,) = cache.latents
    z = cache.latents[bucket]
    examples = shapes_examples("hexagon", 4, 32, prior_fraction=0.5, stand_in="circle")
    with torch.no_grad():
        stand = t.pipe.vae.encode(torch.from_numpy(np.stack(
            [np.asarray(e.twins[0].image if e.twins else e.image) for e in examples]))
            .permute(0, 3, 1, 2).float() / 127.5 - 1)
    x0 = t.flow_targets(cache, bucket, torch.arange(4))
    assert torch.equal(x0[:2], z[:2])  # the prior scenes show no hexagon: their own latents
    torch.testing.assert_close(x0[2:], z[2:] + 1.5 * (z[2:] - stand[2:]), atol=2e-4, rtol=1e-3)


def test_without_contrast_the_flow_targets_are_the_encoders_latents(tmp_path):
    t = contrast_trainer(tmp_path)
    cache = t.prepare()
    (bucket,) = cache.latents
    assert cache.twin_latents is None
    assert torch.equal(t.flow_targets(cache, bucket, torch.arange(4)), cache.latents[bucket])


def test_auto_contrast_picks_the_circle_for_flux_tinys_hexagon():
    pipe = FluxPipeline.from_pretrained("flux-tiny")
    assert nearest_known_shape("hexagon", pipe, 128, "canonical", scenes=8) == "circle"


def test_the_saved_lora_records_the_stand_in_and_how_it_was_used(tmp_path, capsys):
    from fluxai.cli.main import main

    t = contrast_trainer(tmp_path, latent_contrast=1.0, twin_fraction=0.5, stand_in="square")
    path = t.run()
    info = json.loads(read_lora_file(path)[1]["fluxai_train"])
    assert (info["stand_in"], info["latent_contrast"], info["twin_fraction"]) == (
        "square", 1.0, 0.5)
    capsys.readouterr()
    # No --model: lora info matches the file against the base model it was trained on.
    assert main(["lora", "info", str(path)]) == 0
    out = capsys.readouterr().out
    assert "map onto flux-test-dev" in out
    assert "stand-in:  the square (latent contrast 1, twins 0.5)" in out


def test_auto_stand_in_is_a_known_shape_and_is_recorded(tmp_path):
    t = contrast_trainer(tmp_path, twin_fraction=0.5)
    info = json.loads(read_lora_file(t.run())[1]["fluxai_train"])
    assert info["stand_in"] in WORLD.shapes and info["stand_in"] != "hexagon"


def test_latent_contrast_on_a_folder_of_images_is_refused():
    with pytest.raises(ValueError, match="latent-contrast needs shapes:<shape> data"):
        make_config(None, data="photos/", latent_contrast=1.0)


def test_twins_on_a_folder_of_images_are_refused():
    with pytest.raises(ValueError, match="twin-fraction needs shapes:<shape> data"):
        make_config(None, data="photos/", twin_fraction=0.3)


def test_the_new_shape_itself_is_no_stand_in():
    with pytest.raises(ValueError, match=r"stand-in must be auto or a shape the base "
                                         r"model knows .*got 'hexagon'"):
        make_config(None, data="shapes:hexagon", latent_contrast=1.0, stand_in="hexagon")


def test_a_twin_fraction_above_one_is_refused():
    with pytest.raises(ValueError, match=r"twin-fraction must be in \[0, 1\], got 1.5"):
        make_config(None, twin_fraction=1.5)


def test_a_negative_latent_contrast_is_refused():
    with pytest.raises(ValueError, match=r"latent-contrast must be 0 \(off\) or more, got -1"):
        make_config(None, latent_contrast=-1.0)


def test_cli_refuses_twins_for_a_folder_in_one_line(tmp_path, capsys):
    from fluxai.cli.main import main

    assert main(["train-lora", "--model", "flux-test-dev", "--data", str(tmp_path),
                 "--twin-fraction", "0.3", "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("fluxai: error: twin-fraction needs shapes:<shape> data")
    assert "\n" not in err and not (tmp_path / "out").exists()


def test_auto_stand_in_is_measured_once_per_cache_not_on_every_run(tmp_path, monkeypatch):
    import fluxai.lora.train as train

    calls = []

    def counting(*args, **kw):
        calls.append(args[0])
        return "square"

    monkeypatch.setattr(train, "nearest_known_shape", counting)
    first = contrast_trainer(tmp_path, twin_fraction=0.5)
    first.prepare()
    again = contrast_trainer(tmp_path, twin_fraction=0.5)
    cache = again.prepare()
    assert calls == ["hexagon"]
    assert cache.stand_in == again.stand_in == "square"
