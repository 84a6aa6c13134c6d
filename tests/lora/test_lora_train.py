"""`fluxai train-lora` on a small random model: the loop learns, saves, resumes exactly."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from fluxai.cli.main import main
from fluxai.lora import read_lora_file
from fluxai.lora.data import buckets, folder_examples, nearest_bucket
from fluxai.lora.train import Trainer, make_config
from fluxai.pipeline import FluxPipeline
from fluxai.registry import random_preset


def write_folder(folder, n=4, size=(32, 32)):
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        img = np.zeros((size[1], size[0], 3), np.uint8)
        img[:, :] = (200, 30, 30) if i % 2 else (30, 30, 200)
        img[8:24, 8:24] = rng.integers(0, 255, 3)
        Image.fromarray(img).save(folder / f"img{i}.png")
        (folder / f"img{i}.txt").write_text(f"a {'red' if i % 2 else 'blue'} picture")
    return folder


def trainer(tmp_path, data, **kw):
    cfg = make_config(None, model="flux-test-dev", data=str(data), output=str(tmp_path / "run"),
                      rank=4, steps=kw.pop("steps", 6), batch_size=2, resolution=32, lr=5e-3,
                      warmup=1, checkpoint_every=kw.pop("checkpoint_every", 3), **kw)
    pipe = FluxPipeline(**random_preset("flux-test-dev"))
    return Trainer(cfg, pipe)


def test_training_leaves_the_base_weights_alone_and_saves_a_loadable_lora(tmp_path, capsys):
    data = write_folder(tmp_path / "data")
    t = trainer(tmp_path, data, steps=4)
    base = {k: v.clone() for k, v in t.model.state_dict().items()}
    path = t.run()
    assert all(torch.equal(base[k], v) for k, v in t.model.state_dict().items())
    tensors, meta = read_lora_file(path)
    config = json.loads(meta["lora_adapter_metadata"])
    assert (config["transformer.r"], config["transformer.lora_alpha"]) == (4, 4)
    assert any(k.endswith("attn.to_q.lora_A.weight") for k in tensors)
    pipe = FluxPipeline(**random_preset("flux-test-dev"))
    report = pipe.load_lora_weights(str(path))
    assert report.mapped_keys == report.total_keys
    assert main(["lora", "info", str(path), "--model", "flux-test-dev"]) == 0
    assert "trained:   by fluxai on flux-test-dev" in capsys.readouterr().out


def fixed_loss(t, cache, loss=None):
    """The loss (default the flow loss) on the same batches, times and noise every time."""
    loss = loss or t.loss_on
    t.gen.manual_seed(123)
    with torch.no_grad():
        return sum(loss(cache).item() for _ in range(4))


def test_training_lowers_the_loss_on_fixed_batches(tmp_path):
    data = write_folder(tmp_path / "data", n=2)
    t = trainer(tmp_path, data, steps=20, caption_dropout=0.0)
    t.cfg.lr = 2e-2
    t.out.mkdir(parents=True)
    cache = t.prepare()
    before = fixed_loss(t, cache)
    t.run()
    assert fixed_loss(t, cache) < 0.8 * before


def test_resume_continues_exactly_where_it_stopped(tmp_path):
    data = write_folder(tmp_path / "data")
    straight = trainer(tmp_path / "a", data, steps=4)
    straight.run()
    first = trainer(tmp_path / "b", data, steps=4)
    assert first.run(stop_at=2) is None
    second = trainer(tmp_path / "b", data, steps=4)
    second.run(resume=True)
    for p, q in zip(straight.params, second.params, strict=True):
        assert torch.equal(p, q)


def test_an_existing_run_is_not_overwritten_without_resume(tmp_path):
    data = write_folder(tmp_path / "data")
    trainer(tmp_path, data, steps=2, checkpoint_every=1).run()
    with pytest.raises(ValueError, match="--resume"):
        trainer(tmp_path, data, steps=2).run()


def test_images_without_captions_are_refused_naming_one(tmp_path):
    data = write_folder(tmp_path / "data")
    (data / "img2.txt").unlink()
    with pytest.raises(ValueError, match=r"1 of 4 images .* img2.png needs img2.txt"):
        folder_examples(data)


def test_bad_data_leaves_no_run_folder_behind(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train-lora", "--model", "flux-test-dev", "--data", str(tmp_path / "none"),
                 "-o", str(out)]) == 1
    assert "training data folder not found" in capsys.readouterr().err
    assert not out.exists()


def test_wide_and_tall_images_get_wide_and_tall_buckets():
    sizes = buckets(256, 16)
    assert all(w % 16 == 0 and h % 16 == 0 and w * h <= 256 * 256 for w, h in sizes)
    wide, tall = nearest_bucket(1600, 900, sizes), nearest_bucket(900, 1600, sizes)
    assert wide[0] > wide[1] and tall[0] < tall[1]
    assert nearest_bucket(500, 500, sizes) == (256, 256)


def test_explicit_options_override_the_preset():
    cfg = make_config("quick", rank=32, lr=None)
    assert (cfg.rank, cfg.steps, cfg.lr) == (32, 200, 2e-3)


def test_cli_rejects_a_bad_rank_in_one_line(tmp_path, capsys):
    assert main(["train-lora", "--model", "flux-test-dev", "--data", str(tmp_path),
                 "--rank", "0", "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "fluxai: error: rank must be a positive integer, got 0"


def test_cli_trains_on_generated_shapes(tmp_path):
    out = tmp_path / "run"
    assert main(["train-lora", "--model", "flux-test-dev", "--data", "shapes:hexagon",
                 "--count", "4", "--steps", "2", "--batch-size", "2", "--rank", "2",
                 "--resolution", "32", "--sample-prompt", "a red hexagon", "-o", str(out)]) == 0
    assert (out / "lora.safetensors").is_file()
    assert (out / "samples" / "step-000002.png").is_file()


def test_generated_shape_examples_are_placed_in_the_requested_layout(monkeypatch):
    import fluxai.shapes
    from fluxai.lora.data import shapes_examples

    layouts = []
    real_place = fluxai.shapes.place

    def recording_place(spec, width, height, rng, layout="free"):
        layouts.append(layout)
        return real_place(spec, width, height, rng, layout)

    monkeypatch.setattr(fluxai.shapes, "place", recording_place)
    shapes_examples("hexagon", 6, 64, seed=1, layout="canonical")
    assert layouts == ["canonical"] * 6


def test_an_unknown_layout_is_refused_by_the_lora_trainer():
    with pytest.raises(ValueError, match="layout must be one of free, canonical, got 'grid'"):
        make_config(None, layout="grid")


def test_generated_examples_mark_the_ordinary_scenes_as_prior():
    from fluxai.lora.data import shapes_examples

    examples = shapes_examples("hexagon", 8, 64, seed=1, prior_fraction=0.25)
    assert [e.prior for e in examples] == [True] * 2 + [False] * 6
    assert all("hexagon" not in e.caption for e in examples if e.prior)


def prior_only_trainer(tmp_path, prior_loss):
    t = trainer(tmp_path / prior_loss, "shapes:hexagon", count=4, prior_fraction=0.5,
                caption_dropout=0.0, prior_loss=prior_loss)
    cache = t.prepare()
    # Every example a prior one: the loss is then the prior loss alone.
    cache.prior = {b: torch.ones_like(p) for b, p in cache.prior.items()}
    return t, cache


def test_distilled_prior_examples_cost_nothing_while_the_adapter_is_still_zero(tmp_path):
    # LoRA B starts at zero, so the adapted model is the base model: what the prior examples
    # regress (the base's own velocity) is then exactly its prediction.
    t, cache = prior_only_trainer(tmp_path, "distill")
    assert fixed_loss(t, cache) < 1e-10
    data, data_cache = prior_only_trainer(tmp_path, "data")
    assert fixed_loss(data, data_cache) > 1e-3


def test_distilled_prior_examples_cost_what_a_trained_adapter_moved_from_the_base(tmp_path):
    t, cache = prior_only_trainer(tmp_path, "distill")
    with torch.no_grad():
        for p in t.params:
            p.add_(0.05 * torch.randn_like(p))
    assert fixed_loss(t, cache) > 1e-6


def test_an_unknown_prior_loss_is_refused():
    with pytest.raises(ValueError, match="prior-loss must be one of distill, data, got 'x'"):
        make_config(None, prior_loss="x")


def test_the_decoder_phase_saves_a_decoder_adapter_in_the_same_file(tmp_path, capsys):
    data = write_folder(tmp_path / "data")
    t = trainer(tmp_path, data, steps=2, decoder_steps=2, decoder_rank=3)
    vae_before = {k: v.clone() for k, v in t.pipe.vae.state_dict().items()}
    path = t.run()
    assert all(torch.equal(vae_before[k], v) for k, v in t.pipe.vae.state_dict().items())
    tensors, meta = read_lora_file(path)
    convs = list(t.lora.table.convs)
    assert {f"{c}.lora_B.weight" for c in convs} <= set(tensors)
    assert json.loads(meta["fluxai_train"])["decoder_steps"] == 2
    assert main(["lora", "info", str(path), "--model", "flux-test-dev"]) == 0
    assert "2 steps, final loss" in (out := capsys.readouterr().out)
    assert "; then 2 decoder steps, final loss" in out
    pipe = FluxPipeline(**random_preset("flux-test-dev"))
    report = pipe.load_lora_weights(str(path))
    assert report.decoder_modules == len(convs)
    assert report.mapped_keys == report.total_keys


def test_the_decoder_phase_lowers_its_loss_on_fixed_batches(tmp_path):
    data = write_folder(tmp_path / "data", n=2)
    t = trainer(tmp_path, data, steps=1, decoder_steps=25, decoder_lr=1e-2)
    t.out.mkdir(parents=True)
    cache = t.prepare()
    before = fixed_loss(t, cache, t.decoder_loss_on)
    t.run()
    assert fixed_loss(t, cache, t.decoder_loss_on) < 0.8 * before


def test_resume_in_the_decoder_phase_continues_exactly(tmp_path):
    data = write_folder(tmp_path / "data")
    straight = trainer(tmp_path / "a", data, steps=2, decoder_steps=3)
    straight.run()
    first = trainer(tmp_path / "b", data, steps=2, decoder_steps=3)
    assert first.run(stop_at=3) is None
    second = trainer(tmp_path / "b", data, steps=2, decoder_steps=3)
    second.run(resume=True)
    for p, q in zip(straight.params + straight.decoder_params,
                    second.params + second.decoder_params, strict=True):
        assert torch.equal(p, q)


def test_resuming_with_other_decoder_options_is_refused(tmp_path):
    data = write_folder(tmp_path / "data")
    assert trainer(tmp_path, data, steps=4).run(stop_at=2) is None
    with pytest.raises(ValueError, match="saved by a run with other adapters"):
        trainer(tmp_path, data, steps=4, decoder_steps=2).run(resume=True)


def test_cli_rejects_negative_decoder_steps_in_one_line(tmp_path, capsys):
    assert main(["train-lora", "--model", "flux-test-dev", "--data", str(tmp_path),
                 "--decoder-steps", "-1", "-o", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "fluxai: error: decoder-steps must be 0 (no decoder phase) or more, got -1"


def test_an_unknown_decoder_loss_is_refused():
    with pytest.raises(ValueError, match="decoder-loss must be one of l1, shapes, got 'l2'"):
        make_config(None, decoder_loss="l2")


def test_the_shapes_decoder_loss_is_flux_tinys_autoencoder_loss(tmp_path, monkeypatch):
    import fluxai.train.autoencoder as ae_train

    seen = []
    real = ae_train.reconstruction_loss

    def recording(recon, x, tc, palette):
        seen.append((tc, palette.shape, real(recon, x, tc, palette)))
        return seen[-1][2]

    monkeypatch.setattr(ae_train, "reconstruction_loss", recording)
    t = trainer(tmp_path, "shapes:hexagon", count=4, steps=1, decoder_steps=1)
    t.out.mkdir(parents=True)
    cache = t.prepare()
    l1 = fixed_loss(t, cache, t.decoder_loss_on)
    assert seen == []  # the default is plain L1
    t.cfg.decoder_loss = "shapes"
    shapes = fixed_loss(t, cache, t.decoder_loss_on)
    assert len(seen) == 4 and shapes == pytest.approx(sum(loss.item() for *_, loss in seen))
    tc, palette_shape, _ = seen[0]
    assert tc.object_weight > 1 and tc.palette_weight > 0 and palette_shape[1] == 3
    assert shapes != pytest.approx(l1)



def test_an_unknown_target_set_is_refused():
    with pytest.raises(ValueError, match="targets must be one of all, attn, got 'x'"):
        make_config(None, targets="x")
