import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fluxai.cli.main import main
from fluxai.pipeline import FluxPipeline

TINY = """
name = "tiny-test"
text_encoder = "minilm"
text_max_length = 24
threads = 1
[autoencoder]
resolution = 64
ch = 32
ch_mult = [1, 2]
num_res_blocks = 1
z_channels = 4
norm_groups = 8
[transformer]
in_channels = 16
out_channels = 16
vec_in_dim = 384
context_in_dim = 384
hidden_size = 32
num_heads = 2
depth = 1
depth_single_blocks = 1
axes_dim = [4, 6, 6]
guidance_embed = false
[data]
count = 24
captions_per_image = 2
size = 64
[ae_train]
steps = 3
batch_size = 4
crop = 32
full_image_steps = 1
warmup = 1
decoder_steps = 2
[flow_train]
steps = 4
batch_size = 4
warmup = 1
compile = false
[output]
sample_every = 4
checkpoint_every = 2
sample_steps = 3
sample_prompts = ["a red circle"]
"""


@pytest.fixture
def recipe(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.toml"
    path.write_text(TINY + f'dir = "{tmp_path / "run"}"\n')
    return path


def _train(recipe: Path, *extra: str) -> int:
    return main(["train", "--config", str(recipe), *extra])


def test_training_exports_a_model_the_pipeline_loads(recipe, tmp_path):
    assert _train(recipe) == 0
    run = tmp_path / "run"
    report = json.loads((run / "autoencoder_report.json").read_text())
    assert set(report["judged"]) >= {"overall", "counting"}
    assert (run / "loss.png").is_file() and (run / "samples_000004.png").is_file()
    pipe = FluxPipeline.from_pretrained(run / "model")
    pipe.set_progress_bar_config(disable=True)
    image = pipe("a red circle", seed=0).images[0]
    assert image.size == (64, 64)
    assert pipe.defaults.num_inference_steps == 3 and pipe.defaults.true_cfg_scale > 1


def test_decoder_fine_tuning_changes_the_decoder_and_never_the_encoder(recipe, tmp_path):
    assert _train(recipe, "--stage", "ae") == 0
    run = tmp_path / "run"
    trained = torch.load(run / "autoencoder_state.pt", weights_only=False)["model"]
    assert _train(recipe) == 0
    decoder = torch.load(run / "decoder_state.pt", weights_only=False)
    assert decoder["step"] == 2
    assert any(not torch.equal(v, trained[f"decoder.{k}"]) for k, v in decoder["model"].items())
    pipe = FluxPipeline.from_pretrained(run / "model")
    exported = pipe.vae.state_dict()
    for key, value in trained.items():
        if key.startswith("encoder."):
            assert torch.allclose(exported[key].float(), value, atol=1e-2, rtol=1e-2), key
    for key, value in decoder["model"].items():
        assert torch.allclose(exported[f"decoder.{key}"].float(), value, atol=1e-2, rtol=1e-2)
    report = json.loads((run / "autoencoder_report.json").read_text())
    assert set(report["judged_after_decoder"]) >= {"overall"}


def test_a_recipe_with_kind_weights_trains_the_flow_stage(recipe, tmp_path):
    weighted = "[flow_train]\nkind_weights = { position = 3.0 }\n"
    recipe.write_text(recipe.read_text().replace("[flow_train]\n", weighted))
    assert _train(recipe, "--steps", "2") == 0
    assert torch.load(tmp_path / "run" / "flow_state.pt", weights_only=False)["step"] == 2


def test_a_recipe_with_an_exchange_loss_trains_the_flow_stage(recipe, tmp_path):
    exchange = "[flow_train]\nexchange_weight = 0.05\nexchange_batch = 3\n"
    recipe.write_text(recipe.read_text().replace("[flow_train]\n", exchange))
    assert _train(recipe, "--steps", "2") == 0
    text = torch.load(tmp_path / "run" / "text.pt")
    assert (text["exchanged"] >= 0).any()  # some of the 24 scenes have two distinct shapes
    assert torch.load(tmp_path / "run" / "flow_state.pt", weights_only=False)["step"] == 2


def test_an_exchange_loss_on_caches_without_exchanged_captions_is_a_one_line_error(
        recipe, tmp_path, capsys):
    assert _train(recipe, "--steps", "2") == 0
    cache = torch.load(tmp_path / "run" / "scenes.pt", weights_only=False)
    del cache["exchanged"]
    torch.save(cache, tmp_path / "run" / "scenes.pt")
    (tmp_path / "run" / "text.pt").unlink()
    recipe.write_text(recipe.read_text().replace("[flow_train]\n",
                                                 "[flow_train]\nexchange_weight = 0.05\n"))
    capsys.readouterr()
    assert _train(recipe) == 1
    err = capsys.readouterr().err
    line = next(x for x in err.splitlines() if "exchanged captions" in x)
    assert "flow_train.exchange_weight needs" in line and "to rebuild them" in line
    assert "Traceback" not in err  # the environment may log unrelated library warnings


def test_a_run_out_of_minutes_stops_checkpointed_and_exported(recipe, tmp_path, capsys):
    # A budget a microsecond long runs out during the first step.
    assert _train(recipe, "--set", "flow_train.max_minutes=1e-8") == 0
    run = tmp_path / "run"
    assert torch.load(run / "flow_state.pt", weights_only=False)["step"] == 1
    assert (run / "samples_000001.png").is_file()
    assert FluxPipeline.from_pretrained(run / "model").transformer is not None
    shown = capsys.readouterr()
    assert "max_minutes (1e-08) spent after step 1 of 4" in shown.out + shown.err


def test_set_overrides_a_recipe_key_for_one_run(recipe, tmp_path):
    assert _train(recipe, "--set", "flow_train.steps=2", "--set", "flow_train.lr=5e-4") == 0
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    assert saved["flow_train"]["steps"] == 2 and saved["flow_train"]["lr"] == 5e-4
    assert "steps = 4" in recipe.read_text()  # the file itself is left alone


def test_a_malformed_override_is_a_one_line_error_before_any_work(recipe, tmp_path, capsys):
    assert _train(recipe, "--set", "flow_train.lr") == 1
    err = capsys.readouterr().err.strip()
    assert "is not of the form section.key=value" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_an_interrupted_run_resumes_from_its_checkpoint(recipe, tmp_path):
    assert _train(recipe, "--steps", "2") == 0
    state = torch.load(tmp_path / "run" / "flow_state.pt", weights_only=False)
    assert state["step"] == 2 and len(state["losses"]) == 2
    first = state["losses"]
    assert _train(recipe) == 0
    state = torch.load(tmp_path / "run" / "flow_state.pt", weights_only=False)
    assert state["step"] == 4 and len(state["losses"]) == 4
    assert state["losses"][:2] == first  # the first two steps were kept, not redone


def test_the_export_stage_writes_the_checkpoint_as_it_stands_without_training(recipe, tmp_path):
    assert _train(recipe, "--steps", "2") == 0  # a run that has 2 of its 4 steps done
    run = tmp_path / "run"
    (run / "model" / "transformer.safetensors").unlink()
    assert _train(recipe, "--stage", "export") == 0
    assert torch.load(run / "flow_state.pt", weights_only=False)["step"] == 2
    pipe = FluxPipeline.from_pretrained(run / "model")
    pipe.set_progress_bar_config(disable=True)
    assert pipe("a red circle", seed=0).images[0].size == (64, 64)


def test_exporting_before_any_flow_training_is_a_one_line_error(recipe, tmp_path, capsys):
    assert _train(recipe, "--stage", "ae") == 0
    capsys.readouterr()
    assert _train(recipe, "--stage", "export") == 1
    err = capsys.readouterr().err
    assert "no flow checkpoint" in err and len(err.strip().splitlines()) == 1


def test_a_changed_scene_count_is_refused_rather_than_served_from_the_old_cache(recipe, tmp_path,
                                                                               capsys):
    assert _train(recipe, "--stage", "text") == 0
    recipe.write_text(recipe.read_text().replace("count = 24", "count = 30"))
    capsys.readouterr()
    assert _train(recipe, "--stage", "text") == 1
    err = capsys.readouterr().err
    assert "holds 24 scenes of 64 px in the free layout, the recipe asks for 30" in err


def test_a_changed_layout_is_refused_rather_than_served_from_the_old_cache(recipe, capsys):
    assert _train(recipe, "--stage", "text") == 0
    text = recipe.read_text().replace("size = 64\n", 'size = 64\nlayout = "canonical"\n')
    recipe.write_text(text)
    capsys.readouterr()
    assert _train(recipe, "--stage", "text") == 1
    err = capsys.readouterr().err
    assert "in the free layout, the recipe asks for 24 of 64 px in the canonical layout" in err


def test_a_resumed_run_reuses_the_autoencoder_report_instead_of_judging_again(recipe, tmp_path,
                                                                             monkeypatch):
    assert _train(recipe, "--stage", "ae") == 0
    report = json.loads((tmp_path / "run" / "autoencoder_report.json").read_text())

    def judge_again(*_a, **_k):
        raise AssertionError("the finished autoencoder was judged a second time")

    monkeypatch.setattr("fluxai.train.run.judged_reconstruction", judge_again)
    assert _train(recipe, "--stage", "ae") == 0
    assert json.loads((tmp_path / "run" / "autoencoder_report.json").read_text()) == report


def _continuation(recipe: Path, tmp_path: Path, **changes: str) -> Path:
    """A recipe that continues from the first run's exported model without changing it
    (learning rate 0, no decoder fine-tuning) unless `changes` say otherwise."""
    text = recipe.read_text().replace(f'dir = "{tmp_path / "run"}"', f'dir = "{tmp_path / "run2"}"')
    text = text.replace("decoder_steps = 2", "decoder_steps = 0")
    text = text.replace("[flow_train]", "[flow_train]\nlr = 0.0")
    for old, replacement in changes.items():
        text = text.replace(old, replacement)
    path = tmp_path / "continue.toml"
    path.write_text(f'init = "{tmp_path / "run" / "model"}"\n' + text)
    return path


def test_a_run_initialised_from_an_exported_model_starts_from_its_weights(recipe, tmp_path):
    assert _train(recipe) == 0
    assert _train(_continuation(recipe, tmp_path)) == 0
    assert not (tmp_path / "run2" / "autoencoder_state.pt").exists()  # stage 1 was skipped
    first = FluxPipeline.from_pretrained(tmp_path / "run" / "model")
    second = FluxPipeline.from_pretrained(tmp_path / "run2" / "model")
    for a, b in ((first.vae, second.vae), (first.transformer, second.transformer)):
        for (key, x), y in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
            assert torch.equal(x, y), key
    assert second.vae.config == first.vae.config  # its latent scale and shift were kept


def test_a_run_without_init_flow_keeps_the_autoencoder_and_starts_the_flow_anew(recipe,
                                                                                 tmp_path):
    assert _train(recipe) == 0
    fresh = _continuation(recipe, tmp_path)
    fresh.write_text("init_flow = false\n" + fresh.read_text())
    assert _train(fresh) == 0
    first = FluxPipeline.from_pretrained(tmp_path / "run" / "model")
    second = FluxPipeline.from_pretrained(tmp_path / "run2" / "model")
    for (key, x), y in zip(first.vae.state_dict().items(), second.vae.state_dict().values(),
                           strict=True):
        assert torch.equal(x, y), key
    # lr 0 in the continuation: the flow weights are its random initialisation, not run's.
    assert not torch.equal(first.transformer.img_in.weight,
                           second.transformer.img_in.weight)


def test_a_recipe_without_flow_steps_trains_only_the_init_models_decoder(recipe, tmp_path):
    assert _train(recipe) == 0
    decoder_only = _continuation(recipe, tmp_path, **{"steps = 4": "steps = 0"})
    decoder_only.write_text(decoder_only.read_text().replace("decoder_steps = 0",
                                                             "decoder_steps = 2"))
    assert _train(decoder_only) == 0
    first = FluxPipeline.from_pretrained(tmp_path / "run" / "model")
    second = FluxPipeline.from_pretrained(tmp_path / "run2" / "model")
    for (key, x), y in zip(first.transformer.state_dict().items(),
                           second.transformer.state_dict().values(), strict=True):
        assert torch.equal(x, y), key
    for (key, x), y in zip(first.vae.encoder.state_dict().items(),
                           second.vae.encoder.state_dict().values(), strict=True):
        assert torch.equal(x, y), key
    assert not torch.equal(first.vae.decoder.conv_out.weight, second.vae.decoder.conv_out.weight)


def test_a_recipe_with_more_single_blocks_grows_its_init_transformer(recipe, tmp_path):
    assert _train(recipe) == 0
    deeper = _continuation(recipe, tmp_path, **{"depth_single_blocks = 1":
                                                "depth_single_blocks = 3"})
    assert _train(deeper) == 0
    first = FluxPipeline.from_pretrained(tmp_path / "run" / "model")
    second = FluxPipeline.from_pretrained(tmp_path / "run2" / "model")
    assert len(second.transformer.single_blocks) == 3
    # lr 0: the old weights as they were, the new blocks closed, so the same images.
    assert torch.equal(first("a red circle", seed=0, output_type="pt").images,
                       second("a red circle", seed=0, output_type="pt").images)


def test_an_init_model_that_does_not_fit_the_recipe_is_a_one_line_error(recipe, tmp_path,
                                                                         capsys):
    assert _train(recipe) == 0
    capsys.readouterr()
    assert _train(_continuation(recipe, tmp_path, **{"depth = 1": "depth = 2"})) == 1
    err = capsys.readouterr().err.strip()
    assert "does not fit the recipe's [transformer]: depth = 1 (recipe: 2)" in err
    assert len(err.splitlines()) == 1


def test_an_unknown_recipe_key_is_a_one_line_error(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text("[flow_train]\nstepz = 3\n")
    assert _train(bad) == 1
    err = capsys.readouterr().err
    assert "unknown key flow_train.'stepz'" in err and len(err.strip().splitlines()) == 1


def test_an_unknown_precision_is_a_one_line_error_before_any_work(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text(f'precision = "fp16"\n[output]\ndir = "{tmp_path / "run"}"\n')
    assert _train(bad) == 1
    err = capsys.readouterr().err
    assert "precision must be one of auto, bf16, fp32" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run").exists()


def test_an_unknown_layout_is_a_one_line_error_before_any_work(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text(f'[data]\nlayout = "grid"\n[output]\ndir = "{tmp_path / "run"}"\n')
    assert _train(bad) == 1
    err = capsys.readouterr().err
    assert "data.layout must be one of free, canonical, got 'grid'" in err
    assert not (tmp_path / "run").exists()


def test_a_negative_exchange_weight_is_a_one_line_error_before_any_work(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text(f'[flow_train]\nexchange_weight = -1.0\n[output]\ndir = "{tmp_path / "run"}"\n')
    assert main(["train", "--config", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "flow_train.exchange_weight must be >= 0, got -1.0" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "run").exists()


def test_an_unknown_kind_weight_is_a_one_line_error_before_any_work(tmp_path, capsys):
    bad = tmp_path / "bad.toml"
    bad.write_text(f'[flow_train]\nkind_weights = {{ positon = 3.0 }}\n[output]\n'
                   f'dir = "{tmp_path / "run"}"\n')
    assert _train(bad) == 1
    err = capsys.readouterr().err
    assert "flow_train.kind_weights: unknown kind 'positon'; allowed: single_object" in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "run").exists()


@pytest.mark.slow
def test_torchrun_trains_the_flow_stage_data_parallel(recipe, tmp_path):
    assert _train(recipe, "--stage", "ae") == 0
    assert _train(recipe, "--stage", "text") == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "-m",
         "fluxai.cli.main", "train", "--config", str(recipe)],
        env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    state = torch.load(tmp_path / "run" / "flow_state.pt", weights_only=False)
    assert state["step"] == 4
    assert (tmp_path / "run" / "model" / "transformer.safetensors").is_file()


@pytest.mark.slow
def test_a_compiled_flow_stage_trains_and_exports(recipe, tmp_path):
    recipe.write_text(recipe.read_text().replace("compile = false", "compile = true"))
    assert _train(recipe) == 0
    state = torch.load(tmp_path / "run" / "flow_state.pt", weights_only=False)
    assert state["step"] == 4 and all(torch.isfinite(torch.tensor(state["losses"])))
    # Checkpoints hold the plain module's names, not torch.compile's wrapper's.
    assert not any(k.startswith("_orig_mod.") for k in state["model"])
    assert (tmp_path / "run" / "model" / "transformer.safetensors").is_file()
