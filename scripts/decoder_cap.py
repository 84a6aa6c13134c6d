"""How far can a LoRA teach flux-tiny a new shape when its autoencoder has never drawn one?

The flow model only proposes latents; the decoder draws them. flux-tiny's decoder never saw the
held-out hexagon, so even a perfect transformer is capped by what the decoder makes of a
hexagon's latents. This measures that cap ("oracle": ground-truth scenes for the evaluation
prompts, rendered, encoded, decoded, judged), and what a LoRA's decoder adapter
(`train-lora --decoder-steps`) or fine-tuning the whole decoder on the LoRA preset's own
examples does to it. The whole-decoder run writes a model folder (the shipped transformer beside
the adapted autoencoder) that `fluxai eval shapes --model DIR --lora FILE` can use.

    python scripts/decoder_cap.py --prompts runs/hexagon/eval-prompts.jsonl \
        --lora runs/hexagon/lora.safetensors
    python scripts/decoder_cap.py --prompts runs/hexagon/eval-prompts.jsonl --steps 400 \
        --out runs/decoder-hexagon
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from fluxai.lora.data import load_examples
from fluxai.lora.train import PRESETS
from fluxai.pipeline import FluxPipeline
from fluxai.shapes import place, render
from fluxai.shapes.captions import eval_prompts
from fluxai.shapes.evaluate import load_prompts
from fluxai.shapes.judge import judge
from fluxai.train.autoencoder import lr_at, palette_tensor, reconstruction_loss
from fluxai.train.config import load_train_config

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "fluxai" / "weights" / "flux-tiny"


def to_model(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(images).permute(0, 3, 1, 2).float() / 127.5 - 1.0


@torch.no_grad()
def oracle(ae, prompts, seeds: int = 4) -> dict[str, float]:
    """Share of ground-truth scenes for `prompts` that the judge accepts after the round trip."""
    per_kind: dict[str, list[bool]] = {}
    for i, (_, spec) in enumerate(prompts):
        for s in range(seeds):
            image = render(place(spec, 128, 128, np.random.default_rng([i, s]), "canonical"))
            z = ae.encode_moments(to_model(image[None]))[0]
            recon = ((ae.decoder(z).clamp(-1, 1)[0] + 1) * 127.5).round().byte()
            per_kind.setdefault(spec.kind, []).append(
                judge(recon.permute(1, 2, 0).numpy(), spec).correct)
    report = {k: sum(v) / len(v) for k, v in per_kind.items()}
    report["overall"] = sum(sum(v) for v in per_kind.values()) / sum(map(len, per_kind.values()))
    return report


def finetune_decoder(ae, steps: int, preset: dict, seed: int = 0) -> int:
    """The whole decoder on the preset's examples, as the canonical decoder recipe trains it
    (its loss, rate and latent noise). Returns the number of trained parameters."""
    tc = load_train_config(ROOT / "configs" / "flux-tiny-decoder-canonical.toml").ae_train
    examples = load_examples(preset["data"], 128, preset["count"], seed,
                             preset["prior_fraction"], preset["layout"])
    x = to_model(np.stack([np.asarray(e.image) for e in examples]))
    with torch.no_grad():
        z = torch.cat([ae.encode_moments(chunk)[0] for chunk in x.split(32)])
    noise = tc.decoder_noise * z.std().item()
    decoder, palette = ae.decoder.train(), palette_tensor()
    params = list(decoder.requires_grad_(True).parameters())
    lr = tc.decoder_lr
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    gen = torch.Generator().manual_seed(seed)
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, lr, 20, steps)
        idx = torch.randint(0, len(x), (8,), generator=gen)
        latents = z[idx] + noise * torch.randn(z[idx].shape, generator=gen)
        loss = reconstruction_loss(decoder(latents), x[idx], tc, palette)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
    decoder.eval().requires_grad_(False)
    return sum(p.numel() for p in params)


def save_model(ae, out: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(SHIPPED / "transformer.safetensors", out / "transformer.safetensors")
    with safe_open(str(SHIPPED / "ae.safetensors"), "pt") as f:
        meta, keys = f.metadata(), list(f.keys())
        dtype = f.get_tensor(keys[0]).dtype
    state = ae.state_dict()
    save_file({k: state[k].detach().to(dtype).contiguous() for k in keys},
              str(out / "ae.safetensors"), metadata=meta)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--prompts", required=True, help="eval-prompts.jsonl of a shapes LoRA run")
    p.add_argument("--lora", type=Path, default=None,
                   help="measure this LoRA's decoder adapter (fused) instead of fine-tuning")
    p.add_argument("--preset", default="shapes-hexagon")
    p.add_argument("--steps", type=int, default=400, help="whole-decoder fine-tuning steps")
    p.add_argument("--out", type=Path, default=None, help="model folder for the fine-tuned "
                   "decoder (required without --lora)")
    args = p.parse_args()
    if args.lora is None and args.out is None:
        p.error("give --lora FILE, or --out DIR for a whole-decoder fine-tune")
    torch.set_num_threads(2)
    pipe = FluxPipeline.from_pretrained("flux-tiny", torch_dtype=torch.float32)
    ae = pipe.vae
    sets = {"prompts": load_prompts(args.prompts), "standard set": eval_prompts()}
    before = {name: oracle(ae, prompts) for name, prompts in sets.items()}
    started = time.time()
    if args.lora is not None:
        report = pipe.load_lora_weights(str(args.lora), adapter_name="lora")
        pipe.fuse_lora()
        what = f"the decoder adapter of {args.lora} ({report.decoder_modules} convolutions)"
    else:
        trained = finetune_decoder(ae, args.steps, PRESETS[args.preset])
        save_model(ae, args.out)
        what = (f"the whole decoder ({trained:,} parameters): {args.steps} steps x 8 in "
                f"{time.time() - started:.0f} s; model in {args.out}")
    for name, prompts in sets.items():
        after = oracle(ae, prompts)
        print(f"{name}: " + ", ".join(f"{k} {before[name][k]:.3f} -> {after[k]:.3f}"
                                      for k in after))
    print(what)


if __name__ == "__main__":
    main()
