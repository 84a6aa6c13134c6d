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
from fluxai.train.checkpoint import load_state, resume, save_state
from fluxai.train.config import TrainConfig
from fluxai.train.data import TextCache
from fluxai.train.ema import EMA
from fluxai.train.plots import loss_curve
from fluxai.train.precision import autocast
from fluxai.train.seeds import stream_seed


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


def require_flow_checkpoint(run_dir: Path) -> Path:
    path = run_dir / "flow_state.pt"
    if not path.exists():
        raise FileNotFoundError(f"no flow checkpoint ({path.name}) in {run_dir}: train the "
                                "flow stage first")
    return path


def flow_checkpoint(cfg: TrainConfig, run_dir: Path) -> tuple[Flux, EMA, int]:
    """The model, its EMA and the step of the flow checkpoint as it stands: a long run can be
    exported and evaluated while it still has steps to go."""
    state = load_state(require_flow_checkpoint(run_dir))
    model = Flux(cfg.transformer)
    model.load_state_dict(state["model"])
    ema = EMA(model, cfg.flow_train.ema_decay)
    ema.load_state_dict(state["ema"])
    return model, ema, state["step"]


def scene_weights(kinds: list[str], kind_weights: dict[str, float]) -> torch.Tensor | None:
    """Each scene's chance of being drawn, from its kind's weight (1 where unnamed); None when
    every scene is drawn alike."""
    if not kind_weights:
        return None
    return torch.tensor([float(kind_weights.get(kind, 1.0)) for kind in kinds])


def draw_examples(n: int, batch: int, weights: torch.Tensor | None,
                  generator: torch.Generator) -> torch.Tensor:
    if weights is None:
        return torch.randint(0, n, (batch,), generator=generator)
    return torch.multinomial(weights, batch, replacement=True, generator=generator)


def exchange_picks(exchanged: torch.Tensor, dropped: torch.Tensor, k: int,
                   generator: torch.Generator) -> torch.Tensor | None:
    """k positions in the batch whose scene has an exchanged caption and whose own caption was
    not dropped (repeats only where fewer than k qualify); None where none does."""
    eligible = ((exchanged >= 0) & ~dropped).float()
    if not eligible.any():
        return None
    return torch.multinomial(eligible, k, replacement=int(eligible.sum()) < k,
                             generator=generator)


def exchange_loss(own: torch.Tensor, exchanged: torch.Tensor, t: torch.Tensor,
                  temperature: float) -> torch.Tensor:
    """Logistic loss on the relative gap between per-example velocity errors with the exchanged
    and with the own caption: log 2 where the caption's shape order is ignored, towards 0 as the
    exchanged caption becomes clearly worse."""
    gap = (exchanged - own) / own.detach().clamp_min(1e-6)
    return (t * F.softplus(-gap / temperature)).mean()


def time_spent(began: float, max_minutes: float) -> float:
    """The fraction of the wall-clock budget used since `began` (0 where there is none)."""
    return (time.time() - began) / (60 * max_minutes) if max_minutes > 0 else 0.0


def schedule_step(step: int, start: int, steps: int, spent: float) -> int:
    """The step the learning-rate schedule is at: this invocation's steps or its share of the
    time budget (`spent`, see time_spent), whichever is further along, so that a run its budget
    cuts short still ends on a decayed rate."""
    return max(step, start + int(min(spent, 1.0) * (steps - start)))


def train_flow(
    cfg: TrainConfig,
    latents: torch.Tensor,
    text: TextCache,
    run_dir: Path,
    on_sample: Callable[[Flux, EMA, int], None] | None = None,
    init: Flux | None = None,
    kinds: list[str] | None = None,
) -> tuple[Flux, EMA]:
    """Train from (or resume at) the last checkpoint, else from `init`'s weights (or random
    ones); returns the model and its EMA. `kinds` (each scene's kind) is needed only when the
    recipe weights kinds."""
    tc = cfg.flow_train
    ae_cfg = cfg.autoencoder
    d = distributed.setup(cfg.device)
    device = d.device
    model = Flux(cfg.transformer).to(device)
    ema = EMA(model, tc.ema_decay)
    # The fused kernel: one pass over the weights instead of a dozen (31 -> 10 ms a step at
    # flux-tiny's size on 2 CPU cores).
    opt = torch.optim.AdamW(model.parameters(), lr=tc.lr, betas=tc.betas,
                            weight_decay=tc.weight_decay, fused=True)
    ckpt = run_dir / "flow_state.pt"
    start, losses, state = resume(ckpt, model, opt)
    if state is not None:
        ema.load_state_dict(state["ema"])
    elif init is not None:
        model.load_state_dict(init.state_dict())
        ema = EMA(model, tc.ema_decay)
    if start >= tc.steps:
        return model, ema
    # DDP averages gradients across processes; the EMA and checkpoints follow `model` itself.
    forward = DistributedDataParallel(model) if d.active else model

    n, _, lh, lw = latents.shape
    if tc.kind_weights and (kinds is None or len(kinds) != n):
        raise ValueError("flow_train.kind_weights needs the kind of every cached scene")
    weights = scene_weights(kinds or [], tc.kind_weights)
    if tc.exchange_weight and text.exchanged is None:
        raise ValueError("flow_train.exchange_weight needs exchanged captions, which this "
                         "run's text.pt predates: delete scenes.pt, latents.pt and text.pt "
                         "(or use another output.dir) to rebuild them")
    seq_len = (lh // 2) * (lw // 2)
    seed = stream_seed(cfg.data.seed + 11 + 7919 * d.rank, start, init)
    gen = torch.Generator().manual_seed(seed)  # which examples, captions, timesteps
    noise_gen = gen if device.type == "cpu" else torch.Generator(device).manual_seed(seed)
    wide = tc.batch_size + (tc.exchange_batch if tc.exchange_weight else 0)
    img_ids = image_ids(lh, lw, wide, device)
    # A cache built with more tokens than the model reads is cut: MiniLM zero-pads, so the
    # tail of a longer cache is all zeros for every caption that fits.
    length = min(cfg.text_max_length, text.context.shape[1])
    txt_ids = text_ids(wide, length, device)
    # The caches live where the model computes, so a GPU step moves no batch across the bus.
    data = (ae_cfg.scale_factor * (latents - ae_cfg.shift_factor)).to(device)
    context, pooled = text.context[:, :length].to(device), text.pooled.to(device)
    if tc.compile:
        forward = torch.compile(forward)
    model.train()
    bar = tqdm(range(start, tc.steps), initial=start, total=tc.steps, desc="flow",
               disable=not d.is_main)
    began = last_save = time.time()
    bind_losses: list[float] = []
    for step in bar:
        spent = time_spent(began, tc.max_minutes)
        for group in opt.param_groups:
            group["lr"] = lr_at(schedule_step(step, start, tc.steps, spent), tc.lr, tc.warmup,
                                tc.steps)
        idx = draw_examples(n, tc.batch_size, weights, gen)
        which = torch.randint(0, text.index.shape[1], (tc.batch_size,), generator=gen)
        rows = text.index[idx, which]
        drop = torch.rand(tc.batch_size, generator=gen) < tc.caption_dropout
        rows = torch.where(drop, torch.zeros_like(rows), rows)  # row 0: the empty prompt

        t = sample_timesteps(tc.batch_size, cfg, seq_len, gen).to(device)
        picks = exchange_picks(text.exchanged[idx], drop, tc.exchange_batch, gen) \
            if tc.exchange_weight else None
        if picks is not None:  # the picked examples again, with their exchanged captions
            rows = torch.cat([rows, text.exchanged[idx[picks]]])
            picks = picks.to(device)
        idx, rows = idx.to(device), rows.to(device)
        x0 = data[idx]
        noise = torch.randn(x0.shape, generator=noise_gen, device=device)
        tb = t[:, None, None, None]
        xt, target = pack((1 - tb) * x0 + tb * noise), pack(noise - x0)
        tt = t
        if picks is not None:
            xt, target, tt = (torch.cat([v, v[picks]]) for v in (xt, target, t))
        n_in = xt.shape[0]
        with autocast(cfg.precision, device):
            pred = forward(xt, img_ids[:n_in], context[rows].float(), txt_ids[:n_in], tt,
                           pooled[rows])
        per_example = (pred.float() - target).pow(2).mean(dim=(1, 2))
        own = per_example[:tc.batch_size]
        flow_loss = own.mean()
        loss = flow_loss
        if picks is not None:
            bind = exchange_loss(own[picks], per_example[tc.batch_size:], t[picks],
                                 tc.exchange_temperature)
            loss = loss + tc.exchange_weight * bind
            bind_losses.append(bind.item())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        opt.step()
        ema.update(model, step)
        losses.append(flow_loss.item())  # the flow loss alone, comparable across recipes
        shown = {"loss": f"{sum(losses[-50:]) / len(losses[-50:]):.4f}"}
        if bind_losses:
            shown["exchange"] = f"{sum(bind_losses[-50:]) / len(bind_losses[-50:]):.3f}"
        bar.set_postfix(shown)

        done = step + 1
        # Every process must agree to stop, so under DDP the main process's clock decides.
        out_of_time = tc.max_minutes > 0 and distributed.broadcast_flag(d, spent >= 1.0)
        last = done == tc.steps or out_of_time
        if d.is_main:
            if time.time() - last_save > 300 or done % cfg.output.checkpoint_every == 0 or last:
                save_state(ckpt, model=model.state_dict(), ema=ema.state_dict(),
                           optimizer=opt.state_dict(), step=done, losses=losses)
                loss_curve(losses, run_dir / "loss.png")
                last_save = time.time()
            if on_sample is not None and (done % cfg.output.sample_every == 0 or last):
                on_sample(model, ema, done)
        if out_of_time:
            bar.write(f"flow: flow_train.max_minutes ({tc.max_minutes}) spent after step {done}"
                      f" of {tc.steps}; a later run resumes from the checkpoint")
            break
    bar.close()
    distributed.barrier(d)
    return model, ema
