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
from fluxai.train.checkpoint import resume, save_state
from fluxai.train.config import AutoEncoderTrain, TrainConfig
from fluxai.train.data import Scenes
from fluxai.train.precision import autocast
from fluxai.train.seeds import stream_seed, weights_fingerprint

# Pixels are judged by their nearest palette colour; this temperature (in squared [-1, 1]
# units; the closest two palette colours are 0.33 apart) makes the palette cross-entropy
# confident once a pixel sits clearly nearer its own colour than any other.
PALETTE_TEMPERATURE = 0.1


def palette_tensor() -> torch.Tensor:
    """(K, 3) palette colours in the autoencoder's [-1, 1] space."""
    from fluxai.shapes.world import WORLD

    return torch.tensor(list(WORLD.palette.values()), dtype=torch.float32) / 127.5 - 1.0


def palette_cross_entropy(recon: torch.Tensor, target: torch.Tensor, palette: torch.Tensor
                          ) -> torch.Tensor:
    """Per-pixel (N, 1, H, W) cross-entropy of the palette colour nearest the target, with
    logits the negative squared distances of the reconstruction to each palette colour.

    L1/L2 accept a soft edge that is off by half a colour; the judge does not, since it
    snaps every pixel to a palette colour. This term pays for exactly the pixels it would
    misread, so edges and small shapes sharpen much sooner."""
    dist = (recon[:, None] - palette[None, :, :, None, None]).pow(2).sum(2)  # (N, K, H, W)
    with torch.no_grad():
        labels = (target[:, None] - palette[None, :, :, None, None]).pow(2).sum(2).argmin(1)
    ce = torch.nn.functional.cross_entropy(-dist / PALETTE_TEMPERATURE, labels, reduction="none")
    return ce[:, None]


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


def reconstruction_loss(recon: torch.Tensor, x: torch.Tensor, tc: AutoEncoderTrain,
                        palette: torch.Tensor) -> torch.Tensor:
    # Object pixels weigh more than background: small shapes are what must survive.
    weight = 1.0 + (tc.object_weight - 1.0) * object_mask(x)
    error = tc.l1_weight * (recon - x).abs() + tc.l2_weight * (recon - x).pow(2)
    if tc.palette_weight:
        error = error + tc.palette_weight * palette_cross_entropy(recon, x, palette)
    return (weight * error).mean() / weight.mean()


def whole_canvas_batch(cfg: TrainConfig) -> int:
    """Whole canvases per step: a canvas costs (size / crop)^2 crops, so this keeps the
    pixels per step about equal to a crop batch's."""
    tc = cfg.ae_train
    return max(2, tc.batch_size * tc.crop ** 2 // cfg.data.size ** 2)


def train_autoencoder(cfg: TrainConfig, scenes: Scenes, run_dir: Path) -> AutoEncoder:
    tc = cfg.ae_train
    device = torch.device(cfg.device)
    ae = AutoEncoder(cfg.autoencoder).to(device, memory_format=torch.channels_last)
    palette = palette_tensor().to(device)
    opt = torch.optim.AdamW(ae.parameters(), lr=tc.lr, weight_decay=0.0)
    ckpt = run_dir / "autoencoder_state.pt"
    start, losses, state = resume(ckpt, ae, opt)
    if state is None:
        # Posterior std starts near 0.02, not 1: otherwise the decoder's first thousand steps
        # see mostly noise.
        with torch.no_grad():
            ae.encoder.conv_out.bias[cfg.autoencoder.z_channels:] = -8.0
    if start >= tc.steps:
        return ae.cpu().eval()
    gen = torch.Generator().manual_seed(cfg.data.seed + 7 + start)
    ae.train()
    bar = tqdm(range(start, tc.steps), initial=start, total=tc.steps, desc="autoencoder")
    last_save = time.time()
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = lr_at(step, tc.lr, tc.warmup, tc.steps)
        whole = step >= tc.steps - tc.full_image_steps
        count = whole_canvas_batch(cfg) if whole else tc.batch_size
        idx = torch.randint(0, len(scenes.images), (count,), generator=gen)
        x = scenes.to_model_input(idx)
        if not whole:
            x = training_batch(x, tc.crop, gen)
        x = x.to(device).contiguous(memory_format=torch.channels_last)  # oneDNN's fast layout
        with autocast(cfg.precision, device):
            mean, logvar = ae.encode_moments(x)
            mean, logvar = mean.float(), logvar.float().clamp(-30.0, 20.0)
            noise = torch.randn(mean.shape, generator=gen).to(device)
            z = mean + torch.exp(0.5 * logvar) * noise
            recon = ae.decoder(z).float()
        kl = 0.5 * (mean.pow(2) + logvar.exp() - 1.0 - logvar).mean()
        loss = reconstruction_loss(recon, x, tc, palette) + tc.kl_weight * kl
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
    return ae.cpu().eval()


def finetune_decoder(cfg: TrainConfig, ae: AutoEncoder, scenes: Scenes, latents: torch.Tensor,
                     run_dir: Path) -> AutoEncoder:
    """Train the decoder alone on whole canvases from the cached (frozen-encoder) latents.

    The latent space is fixed once latents are cached, so the decoder can keep learning
    without invalidating a flow model trained on them; it also sees the latents with a little
    noise, as a flow model's samples are never exactly an encoder's output. Needs no encoder
    pass, so a step costs about half an autoencoder step."""
    tc = cfg.ae_train
    if tc.decoder_steps <= 0:
        return ae
    device = torch.device(cfg.device)
    decoder = ae.decoder.to(device, memory_format=torch.channels_last)
    palette = palette_tensor().to(device)
    opt = torch.optim.AdamW(decoder.parameters(), lr=tc.decoder_lr, weight_decay=0.0)
    ckpt = run_dir / "decoder_state.pt"
    # A shipped decoder was fine-tuned on this stage's stream: fingerprinted before resuming.
    init_fingerprint = weights_fingerprint(decoder) if cfg.init else None
    start, losses, _ = resume(ckpt, decoder, opt)
    gen = torch.Generator().manual_seed(stream_seed(cfg.data.seed + 13, start, init_fingerprint))
    noise_std = tc.decoder_noise * latents.std().item()
    count = whole_canvas_batch(cfg)
    decoder.train()
    bar = tqdm(range(start, tc.decoder_steps), initial=start, total=tc.decoder_steps,
               desc="decoder")
    last_save = time.time()
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = lr_at(step, tc.decoder_lr, tc.warmup, tc.decoder_steps)
        idx = torch.randint(0, len(scenes.images), (count,), generator=gen)
        x = scenes.to_model_input(idx).to(device).contiguous(memory_format=torch.channels_last)
        z = latents[idx]
        z = z + noise_std * torch.randn(z.shape, generator=gen)
        with autocast(cfg.precision, device):
            recon = decoder(z.to(device).contiguous(memory_format=torch.channels_last)).float()
        loss = reconstruction_loss(recon, x, tc, palette)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(decoder.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{loss.item():.4f}")
        if time.time() - last_save > 120 or step + 1 == tc.decoder_steps:
            save_state(ckpt, model=decoder.state_dict(), optimizer=opt.state_dict(),
                       step=step + 1, losses=losses)
            last_save = time.time()
    ae.decoder = decoder.cpu().eval()
    return ae


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
def judged_reconstruction(ae: AutoEncoder, size: int, count: int = 120, seed: int = 99,
                          layout: str = "free") -> dict[str, float]:
    """Share of fresh ground-truth scenes whose reconstruction the judge still accepts, per
    kind: what the autoencoder costs the final score before any flow model is trained."""
    from fluxai.shapes import iter_examples
    from fluxai.shapes.judge import judge

    examples = list(iter_examples(seed, count, size, supersample=1, layout=layout))
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
