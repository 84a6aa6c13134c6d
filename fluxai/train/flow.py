"""Stage 2: the Flux transformer, trained by rectified flow on cached latents and embeddings."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from fluxai.model.transformer import Flux
from fluxai.sampling import image_ids, pack, text_ids, time_shift_mu
from fluxai.train import distributed
from fluxai.train.autoencoder import lr_at
from fluxai.train.checkpoint import resume, save_state
from fluxai.train.config import TrainConfig
from fluxai.train.data import TextCache
from fluxai.train.ema import EMA
from fluxai.train.plots import loss_curve
from fluxai.train.precision import autocast


def sample_timesteps(batch: int, cfg: TrainConfig, seq_len: int, generator: torch.Generator
                     ) -> torch.Tensor:
    """Logit-normal t (most weight mid-trajectory), optionally shifted as sampling shifts it."""
    tc = cfg.flow_train
    t = torch.sigmoid(torch.randn(batch, generator=generator) * tc.logit_normal_std
                      + tc.logit_normal_mean)
    if tc.shift:
        mu = math.exp(time_shift_mu(seq_len))
        t = mu / (mu + (1.0 / t - 1.0))
    return t


def train_flow(
    cfg: TrainConfig,
    latents: torch.Tensor,
    text: TextCache,
    run_dir: Path,
    on_sample: Callable[[Flux, EMA, int], None] | None = None,
) -> tuple[Flux, EMA]:
    """Train from (or resume at) the last checkpoint; returns the model and its EMA."""
    tc = cfg.flow_train
    ae_cfg = cfg.autoencoder
    d = distributed.setup(cfg.device)
    device = d.device
    model = Flux(cfg.transformer).to(device)
    ema = EMA(model, tc.ema_decay)
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, betas=tc.betas,
                            weight_decay=tc.weight_decay)
    ckpt = run_dir / "flow_state.pt"
    start, losses, state = resume(ckpt, model, opt)
    if state is not None:
        ema.load_state_dict(state["ema"])
    if start >= tc.steps:
        return model, ema
    # DDP averages gradients across processes; the EMA and checkpoints follow `model` itself.
    forward = DistributedDataParallel(model) if d.active else model

    n, _, lh, lw = latents.shape
    seq_len = (lh // 2) * (lw // 2)
    gen = torch.Generator().manual_seed(cfg.data.seed + 11 + start + 7919 * d.rank)
    img_ids = image_ids(lh, lw, tc.batch_size, device)
    # A cache built with more tokens than the model reads is cut: MiniLM zero-pads, so the
    # tail of a longer cache is all zeros for every caption that fits.
    length = min(cfg.text_max_length, text.context.shape[1])
    txt_ids = text_ids(tc.batch_size, length, device)
    if tc.compile:
        forward = torch.compile(forward)
    model.train()
    bar = tqdm(range(start, tc.steps), initial=start, total=tc.steps, desc="flow",
               disable=not d.is_main)
    last_save = time.time()
    for step in bar:
        for group in opt.param_groups:
            group["lr"] = lr_at(step, tc.lr, tc.warmup, tc.steps)
        idx = torch.randint(0, n, (tc.batch_size,), generator=gen)
        which = torch.randint(0, text.index.shape[1], (tc.batch_size,), generator=gen)
        rows = text.index[idx, which]
        drop = torch.rand(tc.batch_size, generator=gen) < tc.caption_dropout
        rows = torch.where(drop, torch.zeros_like(rows), rows)  # row 0: the empty prompt

        x0 = ae_cfg.scale_factor * (latents[idx] - ae_cfg.shift_factor)
        noise = torch.randn(x0.shape, generator=gen)
        t = sample_timesteps(tc.batch_size, cfg, seq_len, gen)
        tb = t[:, None, None, None]
        xt = (1 - tb) * x0 + tb * noise
        target = pack(noise - x0).to(device)
        with autocast(cfg.precision, device):
            pred = forward(pack(xt).to(device), img_ids,
                           text.context[rows, :length].float().to(device), txt_ids, t.to(device),
                           text.pooled[rows].to(device))
        loss = F.mse_loss(pred.float(), target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        opt.step()
        ema.update(model, step)
        losses.append(loss.item())
        bar.set_postfix(loss=f"{sum(losses[-50:]) / len(losses[-50:]):.4f}")

        done = step + 1
        if not d.is_main:
            continue
        if time.time() - last_save > 300 or done % cfg.output.checkpoint_every == 0 \
                or done == tc.steps:
            save_state(ckpt, model=model.state_dict(), ema=ema.state_dict(),
                       optimizer=opt.state_dict(), step=done, losses=losses)
            loss_curve(losses, run_dir / "loss.png")
            last_save = time.time()
        if on_sample is not None and (done % cfg.output.sample_every == 0 or done == tc.steps):
            on_sample(model, ema, done)
    distributed.barrier(d)
    return model, ema
