"""How far can a LoRA teach flux-tiny a new shape when its autoencoder has never drawn one?

The flow model only proposes latents; the decoder draws them. flux-tiny's decoder never saw the
held-out hexagon, so even a perfect transformer is capped by what the decoder makes of a
hexagon's latents. This measures that cap ("oracle": ground-truth scenes for the evaluation
prompts, rendered, encoded, decoded, judged) and what fine-tuning the decoder on the LoRA
preset's own examples does to it. It writes a model folder (the shipped transformer beside the
adapted autoencoder) that `fluxai eval shapes --model DIR --lora FILE` can use, so the effect on
a trained LoRA can be measured too.

    python scripts/decoder_cap.py --prompts runs/hexagon/eval-prompts.jsonl --steps 400 \
        --out runs/decoder-hexagon [--rank 16 --lr 2e-3]

`--rank` trains a LoCon-style conv LoRA on every decoder convolution instead of the whole
decoder: whether a LoRA file could carry the decoder's share of a new shape.
"""

from __future__ import annotations

import argparse
import math
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


class ConvLora(torch.nn.Module):
    """A frozen convolution plus a rank-r update: a k×k down to r channels, a 1×1 up that
    starts at zero (LoCon's form), so training starts from the shipped decoder."""

    def __init__(self, conv: torch.nn.Conv2d, rank: int):
        super().__init__()
        self.conv = conv.requires_grad_(False)
        self.down = torch.nn.Conv2d(conv.in_channels, rank, conv.kernel_size, conv.stride,
                                    conv.padding, bias=False)
        self.up = torch.nn.Conv2d(rank, conv.out_channels, 1, bias=False)
        torch.nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5))
        torch.nn.init.zeros_(self.up.weight)

    @property
    def weight(self) -> torch.Tensor:  # the decoder reads its output conv's dtype
        return self.conv.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) + self.up(self.down(x))

    def fused(self) -> torch.nn.Conv2d:
        delta = torch.einsum("or,rikl->oikl", self.up.weight[:, :, 0, 0], self.down.weight)
        self.conv.weight.data += delta
        return self.conv


def add_conv_lora(decoder: torch.nn.Module, rank: int) -> list[torch.nn.Parameter]:
    for module in list(decoder.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, torch.nn.Conv2d):
                setattr(module, name, ConvLora(child, rank))
    return [p for m in decoder.modules() if isinstance(m, ConvLora)
            for p in (m.down.weight, m.up.weight)]


def fuse_conv_lora(decoder: torch.nn.Module) -> None:
    for module in list(decoder.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, ConvLora):
                setattr(module, name, child.fused())


def finetune_decoder(ae, steps: int, preset: dict, rank: int = 0, lr: float | None = None,
                     seed: int = 0) -> int:
    """The decoder alone (rank 0) or a conv LoRA on it, on the preset's examples, as the
    canonical decoder recipe trains it (its loss and latent noise). Returns the number of
    trained parameters."""
    tc = load_train_config(ROOT / "configs" / "flux-tiny-decoder-canonical.toml").ae_train
    examples = load_examples(preset["data"], 128, preset["count"], seed,
                             preset["prior_fraction"], preset["layout"])
    x = to_model(np.stack([np.asarray(e.image) for e in examples]))
    with torch.no_grad():
        z = torch.cat([ae.encode_moments(chunk)[0] for chunk in x.split(32)])
    noise = tc.decoder_noise * z.std().item()
    decoder, palette = ae.decoder.train(), palette_tensor()
    if rank:
        params = add_conv_lora(decoder.requires_grad_(False), rank)
    else:
        params = list(decoder.requires_grad_(True).parameters())
    lr = lr or tc.decoder_lr
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
    if rank:
        fuse_conv_lora(decoder)
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
    p.add_argument("--preset", default="shapes-hexagon")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--rank", type=int, default=0,
                   help="train a conv LoRA of this rank on the decoder (0: the whole decoder)")
    p.add_argument("--lr", type=float, default=None,
                   help="default: the decoder recipe's (5e-4); 2e-3 for a LoRA")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    torch.set_num_threads(2)
    ae = FluxPipeline.from_pretrained("flux-tiny", torch_dtype=torch.float32).vae
    sets = {"prompts": load_prompts(args.prompts), "standard set": eval_prompts()}
    before = {name: oracle(ae, prompts) for name, prompts in sets.items()}
    started = time.time()
    trained = finetune_decoder(ae, args.steps, PRESETS[args.preset], args.rank, args.lr)
    seconds = time.time() - started
    save_model(ae, args.out)
    for name, prompts in sets.items():
        after = oracle(ae, prompts)
        print(f"{name}: " + ", ".join(f"{k} {before[name][k]:.3f} -> {after[k]:.3f}"
                                      for k in after))
    what = f"a rank-{args.rank} conv LoRA" if args.rank else "the whole decoder"
    print(f"{what} ({trained:,} parameters): {args.steps} steps x 8 in {seconds:.0f} s; "
          f"model (the LoRA fused) in {args.out}")


if __name__ == "__main__":
    main()
