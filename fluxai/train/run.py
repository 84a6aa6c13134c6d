"""`fluxai train`: every stage of a Shapes World model, each cached and resumable.

scenes -> autoencoder -> latents (+ their scale and shift) -> caption embeddings -> flow model
-> decoder fine-tuning on the frozen latents (optional) -> exported model folder (BFL-layout
safetensors) that `FluxPipeline.from_pretrained` loads. The export stage alone writes that
folder from the flow checkpoint as it stands, so a run spread over several sessions can be
evaluated between them.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import replace
from pathlib import Path

import torch

from fluxai.atomic import torch_save
from fluxai.config import SamplingDefaults
from fluxai.model.autoencoder import AutoEncoder
from fluxai.model.transformer import Flux
from fluxai.text.base import TextEncoder, build_text_encoder
from fluxai.train import distributed
from fluxai.train.autoencoder import (
    finetune_decoder,
    judged_reconstruction,
    reconstruction_report,
    train_autoencoder,
)
from fluxai.train.config import TrainConfig
from fluxai.train.data import Scenes, TextCache, encode_latents
from fluxai.train.ema import EMA
from fluxai.train.flow import flow_checkpoint, require_flow_checkpoint, train_flow
from fluxai.train.grow import add_single_blocks
from fluxai.train.plots import image_grid


def latent_statistics(latents: torch.Tensor) -> tuple[float, float]:
    """(scale, shift) that give the flow model zero-mean, unit-variance latents."""
    shift = latents.mean().item()
    return 1.0 / (latents - shift).std().item(), shift


def sampling_defaults(cfg: TrainConfig) -> SamplingDefaults:
    size = cfg.data.size
    return SamplingDefaults(
        width=size, height=size, num_inference_steps=cfg.output.sample_steps,
        guidance_scale=0.0, true_cfg_scale=cfg.output.sample_cfg, shift=cfg.flow_train.shift,
        max_sequence_length=cfg.text_max_length, negative_prompt="",
    )


def export_model(cfg: TrainConfig, transformer: Flux, ae: AutoEncoder, out_dir: Path,
                 defaults: SamplingDefaults) -> None:
    from fluxai.checkpoints import save_autoencoder, save_transformer

    out_dir.mkdir(parents=True, exist_ok=True)
    extra = {"fluxai_model": json.dumps({
        "name": cfg.name,
        "text_encoder": cfg.text_encoder,
        "text_encoder_args": {"max_length": cfg.text_max_length},
        "sampling": vars(defaults),
    })}
    save_transformer(transformer, out_dir / "transformer.safetensors", dtype=torch.float16,
                     metadata=extra)
    save_autoencoder(ae, out_dir / "ae.safetensors", dtype=torch.float16)


def initial_weights(cfg: TrainConfig) -> tuple[AutoEncoder, Flux]:
    """The autoencoder and transformer of `cfg.init`, checked against the recipe's shapes; a
    recipe with more single-stream blocks grows the transformer (fluxai.train.grow)."""
    from fluxai.checkpoints import load_autoencoder, load_transformer
    from fluxai.registry import fluxai_folder

    folder = fluxai_folder(cfg.init)
    ae = load_autoencoder(folder / "ae.safetensors", dtype=torch.float32)
    flow = load_transformer(folder / "transformer.safetensors", dtype=torch.float32)
    if cfg.transformer.depth_single_blocks > flow.config.depth_single_blocks:
        flow = add_single_blocks(flow, cfg.transformer.depth_single_blocks)
    # scale and shift are measured properties of the trained autoencoder, not architecture.
    pairs = [("autoencoder", replace(ae.config, scale_factor=0.0, shift_factor=0.0),
              replace(cfg.autoencoder, scale_factor=0.0, shift_factor=0.0)),
             ("transformer", flow.config, cfg.transformer)]
    for section, found, wanted in pairs:
        a, b = found.to_dict(), wanted.to_dict()
        diff = [f"{k} = {a[k]!r} (recipe: {b[k]!r})" for k in a if a[k] != b.get(k)]
        if diff:
            raise ValueError(f"init model {cfg.init!r} does not fit the recipe's [{section}]: "
                             + ", ".join(diff))
    return ae.train(), flow


def run_training(cfg: TrainConfig, stages: tuple[str, ...] = ("ae", "flow")) -> Path:
    run_dir = Path(cfg.output.dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "config.json").write_text(json.dumps(_jsonable(cfg), indent=2))
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    started = time.time()
    if distributed.launched_by_torchrun():
        # Every process would build the same caches at once; prepare them in one process.
        needed = ("scenes.pt", "latents.pt", "text.pt") if cfg.init else \
            ("scenes.pt", "autoencoder_state.pt", "latents.pt", "text.pt")
        missing = [n for n in needed if not (run_dir / n).exists()]
        if missing:
            raise RuntimeError(
                f"under torchrun only the flow stage runs; {', '.join(missing)} missing in "
                f"{run_dir}: run `fluxai train --config ... --stage ae` and `--stage text` "
                "in one process first")
    if "export" in stages:
        require_flow_checkpoint(run_dir)  # before minutes of cache loading, not after
    # Checked before minutes of rendering, like the export's checkpoint.
    init_ae, init_flow = initial_weights(cfg) if cfg.init else (None, None)
    scenes = Scenes.build(cfg.data, run_dir / "scenes.pt")
    # On the training device: on a GPU the caption cache takes seconds instead of minutes.
    # (Under torchrun the caches exist already and rank 0 alone samples: it stays on the CPU.)
    encoder = build_text_encoder(cfg.text_encoder, max_length=cfg.text_max_length).to(
        "cpu" if distributed.launched_by_torchrun() else cfg.device)
    if stages == ("text",):
        # The caption cache does not depend on the autoencoder: a second process can build
        # it while the first trains the autoencoder.
        TextCache.build(encoder, scenes, run_dir / "text.pt")
        return run_dir

    ae = init_ae if init_ae is not None else train_autoencoder(cfg, scenes, run_dir)
    report_path = run_dir / "autoencoder_report.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    source = {"init": cfg.init} if cfg.init else {"ae_steps": cfg.ae_train.steps}
    if any(report.get(k) != v for k, v in source.items()):  # measured once per autoencoder
        report = {**source, **reconstruction_report(ae, scenes),
                  "judged": judged_reconstruction(ae, cfg.data.size,
                                                  count=min(120, cfg.data.count),
                                                  layout=cfg.data.layout)}
        report_path.write_text(json.dumps(report, indent=2))
    print(f"autoencoder reconstruction: {report}")
    latents = encode_latents(ae, scenes, run_dir / "latents.pt", torch.device(cfg.device),
                             cfg.precision)
    if "flow" not in stages and "export" not in stages:
        return run_dir

    if init_ae is not None:  # the flow model it was trained with expects its scale and shift
        cfg.autoencoder = init_ae.config
    else:
        scale, shift = latent_statistics(latents)
        cfg.autoencoder = replace(cfg.autoencoder, scale_factor=scale, shift_factor=shift)
    ae.config = cfg.autoencoder  # decode() now applies the measured scale and shift

    text = TextCache.build(encoder, scenes, run_dir / "text.pt")
    defaults = sampling_defaults(cfg)

    def on_sample(model: Flux, ema: EMA, step: int) -> None:
        averaged = copy.deepcopy(model)
        ema.copy_to(averaged)
        _sample_grid(cfg, averaged.eval(), ae, encoder, defaults,
                     run_dir / f"samples_{step:06d}.png")

    if "export" in stages:
        model, ema, step = flow_checkpoint(cfg, run_dir)
        print(f"exporting the flow checkpoint at step {step} of {cfg.flow_train.steps}")
    else:
        model, ema = train_flow(cfg, latents, text, run_dir, on_sample=on_sample,
                                init=init_flow if cfg.init_flow else None, kinds=scenes.kinds)
    if not distributed.is_main_process():
        return run_dir
    if cfg.ae_train.decoder_steps > 0:
        # Last, because it leaves the latent space (and so the flow model) untouched.
        ae = finetune_decoder(cfg, ae, scenes, latents, run_dir)
        report["judged_after_decoder"] = judged_reconstruction(
            ae, cfg.data.size, count=min(120, cfg.data.count), layout=cfg.data.layout)
        report_path.write_text(json.dumps(report, indent=2))
        print(f"after decoder fine-tuning: {report['judged_after_decoder']}")
    ema.copy_to(model)
    export_model(cfg, model.eval(), ae, run_dir / "model", defaults)
    torch_save({"seconds": time.time() - started}, run_dir / "timing.pt")
    return run_dir


def _sample_grid(cfg: TrainConfig, model: Flux, ae: AutoEncoder, encoder: TextEncoder,
                 defaults: SamplingDefaults, path: Path) -> None:
    from fluxai.pipeline import FluxPipeline

    # Sampled where the model trains; the autoencoder goes back to the CPU, where the
    # later stages (decoder fine-tuning, export) expect it.
    pipe = FluxPipeline(model, ae, encoder, defaults, name=cfg.name)
    pipe.to(next(model.parameters()).device)
    pipe.set_progress_bar_config(disable=True)
    prompts = cfg.output.sample_prompts
    images = pipe(prompts, num_images_per_prompt=2, seed=0).images
    ae.cpu()
    labels = [p for p in prompts for _ in range(2)]
    image_grid(images, labels, cols=4).save(path)


def _jsonable(obj):
    if hasattr(obj, "__dataclass_fields__"):
        return {k: _jsonable(getattr(obj, k)) for k in obj.__dataclass_fields__}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    return obj
