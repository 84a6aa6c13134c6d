"""Stage 1: the autoencoder, trained on crops of the rendered scenes, then on whole canvases.

The network is fully convolutional apart from its bottleneck attention, so small crops teach
the same edges as full images at a fraction of the cost; GroupNorm statistics do depend on the
canvas, hence a short last phase on whole images.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from fluxai.model.autoencoder import AutoEncoder
from fluxai.train.checkpoint import load_state, save_state
from fluxai.train.config import TrainConfig
from fluxai.train.data import Scenes


def lr_at(step: int, base: float, warmup: int, total: int) -> float:
    """Linear warm-up, then cosine decay to 10% of the base rate."""
    if step < warmup:
        return base * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def object_mask(images: torch.Tensor) -> torch.Tensor:
    """(N, 1, H, W): pixels that differ from the background (the top-left pixel's colour)."""
    return ((images - images[:, :, :1, :1]).abs().amax(1, keepdim=True) > 0.05).float()


def object_crops(images: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """Crops centred (with slack) on a random object pixel: objects cover a few percent of a
    canvas, so uniform crops would mostly teach the autoencoder flat background."""
    _, _, h, w = images.shape
    mask = object_mask(images)[:, 0]
    crops = []
    for img, m in zip(images, mask, strict=True):
        ys, xs = torch.nonzero(m, as_tuple=True)
        if len(ys):
            k = int(torch.randint(0, len(ys), (1,), generator=generator))
            jitter = torch.randint(-size // 4, size // 4 + 1, (2,), generator=generator)
            y = int(ys[k] + jitter[0]) - size // 2
            x = int(xs[k] + jitter[1]) - size // 2
        else:
            y, x = (int(v) for v in torch.randint(0, h - size + 1, (2,), generator=generator))
        y, x = min(max(y, 0), h - size), min(max(x, 0), w - size)
        crops.append(img[:, y:y + size, x:x + size])
    return torch.stack(crops)


def training_batch(images: torch.Tensor, size: int, generator: torch.Generator) -> torch.Tensor:
    """Half object-centred crops (small shapes are what must survive), half uniform ones (so
    normalisation statistics also see mostly-background crops, as in whole canvases)."""
    _, _, h, w = images.shape
    if size >= min(h, w):
        return images
    half = len(images) // 2
    ys = torch.randint(0, h - size + 1, (len(images) - half,), generator=generator).tolist()
    xs = torch.randint(0, w - size + 1, (len(images) - half,), generator=generator).tolist()
    uniform = [img[:, y:y + size, x:x + size] for img, y, x in zip(images[half:], ys, xs,
                                                                        strict=True)]
    return torch.cat([object_crops(images[:half], size, generator), torch.stack(uniform)])


def train_autoencoder(cfg: TrainConfig, scenes: Scenes, run_dir: Path) -> AutoEncoder:
    tc = cfg.ae_train
    ae = AutoEncoder(cfg.autoencoder)
    opt = torch.optim.AdamW(ae.parameters(), lr=tc.lr, weight_decay=0.0)
    ckpt = run_dir / "autoencoder_state.pt"
    state = load_state(ckpt)
    start, losses = 0, []
    if state is not None:
        ae.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        start, losses = state["step"], state["losses"]
    else:
        # Posterior std starts near 0.02, not 1: otherwise the decoder's first thousand steps
        # see mostly noise.
        with torch.no_grad():
            ae.encoder.conv_out.bias[cfg.autoencoder.z_channels:] = -8.0
    if start >= tc.steps:
        return ae.eval()
    gen = torch.Generator().manual_seed(cfg.data.seed + 7 + start)
    ae.train()
    bar = tqdm(range(start, tc.steps), initial=start, total=tc.steps, desc="autoencoder")
    last_save = time.time()
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = lr_at(step, tc.lr, tc.warmup, tc.steps)
        whole = step >= tc.steps - tc.full_image_steps
        # A whole canvas costs (size / crop)^2 crops: keep the pixels per step about equal.
        count = max(2, tc.batch_size * tc.crop ** 2 // cfg.data.size ** 2) if whole \
            else tc.batch_size
        idx = torch.randint(0, len(scenes.images), (count,), generator=gen)
        x = scenes.to_model_input(idx)
        if not whole:
            x = training_batch(x, tc.crop, gen)
        mean, logvar = ae.encode_moments(x)
        logvar = logvar.clamp(-30.0, 20.0)
        z = mean + torch.exp(0.5 * logvar) * torch.randn(mean.shape, generator=gen)
        recon = ae.decoder(z)
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).mean()
        # Object pixels weigh more than background: small shapes are what must survive.
        weight = 1.0 + (tc.object_weight - 1.0) * object_mask(x)
        error = tc.l1_weight * (recon - x).abs() + tc.l2_weight * (recon - x).pow(2)
        loss = (weight * error).mean() / weight.mean() + tc.kl_weight * kl
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(ae.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{loss.item():.4f}", kl=f"{kl.item():.2f}")
        if time.time() - last_save > 120 or step + 1 == tc.steps:
            save_state(ckpt, model=ae.state_dict(), optimizer=opt.state_dict(), step=step + 1,
                       losses=losses)
            last_save = time.time()
    return ae.eval()


@torch.no_grad()
def reconstruction_report(ae: AutoEncoder, scenes: Scenes, count: int = 256) -> dict[str, float]:
    """Pixel error of full-image reconstructions on the last `count` scenes (never cropped)."""
    count = min(count, len(scenes.images))
    idx = torch.arange(len(scenes.images) - count, len(scenes.images))
    mse, err_px = 0.0, 0.0
    for chunk in idx.split(64):
        x = scenes.to_model_input(chunk)
        mean, _ = ae.encode_moments(x)
        recon = ae.decoder(mean).clamp(-1, 1)
        mse += (recon - x).pow(2).mean().item() * len(chunk)
        # Fraction of pixels off by more than ~10/255 in some channel: blur shows up here.
        err_px += ((recon - x).abs().amax(1) > 0.08).float().mean().item() * len(chunk)
    return {"mse": mse / count, "bad_pixel_fraction": err_px / count}


@torch.no_grad()
def judged_reconstruction(ae: AutoEncoder, size: int, count: int = 120, seed: int = 99
                          ) -> dict[str, float]:
    """Share of fresh ground-truth scenes whose reconstruction the judge still accepts, per
    kind: what the autoencoder costs the final score before any flow model is trained."""
    from fluxai.shapes import iter_examples
    from fluxai.shapes.judge import judge

    examples = list(iter_examples(seed, count, size, supersample=1))
    images = torch.from_numpy(np.stack([e[0] for e in examples]))
    x = images.permute(0, 3, 1, 2).float() / 127.5 - 1.0
    recon = torch.cat([ae.decoder(ae.encode_moments(chunk)[0]) for chunk in x.split(32)])
    recon = ((recon.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    per_kind: dict[str, list[bool]] = {}
    for (_, _, spec, _), image in zip(examples, recon, strict=True):
        per_kind.setdefault(spec.kind, []).append(judge(image, spec).correct)
    report = {kind: sum(v) / len(v) for kind, v in sorted(per_kind.items())}
    report["overall"] = sum(sum(v) for v in per_kind.values()) / count
    return report
