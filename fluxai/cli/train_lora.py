"""`fluxai train-lora`: teach a model something new with a LoRA, on the CPU or a GPU."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction, name: str) -> None:
    from fluxai.lora.train import DECODER_LOSSES, PRESETS, PRIOR_LOSSES, TARGETS
    from fluxai.shapes.scenes import LAYOUTS

    p = sub.add_parser(name, help="train a LoRA on image+caption folders or Shapes World data")
    p.add_argument("--preset", default=None, choices=sorted(PRESETS),
                   help="starting values for the options below; explicit flags win")
    p.add_argument("--model", default=None, help="base model name or folder (default flux-tiny)")
    p.add_argument("--data", default=None,
                   help="folder of images with .txt captions (or captions.jsonl), or "
                        "shapes:<shape> to generate Shapes World examples (e.g. shapes:hexagon)")
    p.add_argument("-o", "--output", default=None,
                   help="run folder: lora.safetensors, samples/, train_state.pt (default lora-out)")
    p.add_argument("--rank", type=int, default=None, help="LoRA rank (default 8)")
    p.add_argument("--alpha", type=float, default=None, help="LoRA alpha (default: the rank)")
    p.add_argument("--targets", choices=TARGETS, default=None,
                   help="train every block linear layer (all) or attention only (attn)")
    p.add_argument("--steps", type=int, default=None, help="optimizer steps (default 600)")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default 1e-3)")
    p.add_argument("--batch-size", type=int, default=None, help="examples per step (default 8)")
    p.add_argument("--resolution", type=int, default=None,
                   help="bucket area is resolution² pixels (default: the model's image size)")
    p.add_argument("--count", type=int, default=None,
                   help="generated examples for shapes:<shape> data (default 200)")
    p.add_argument("--prior-fraction", type=float, default=None,
                   help="share of generated examples without the shape (default 0.25)")
    p.add_argument("--prior-loss", choices=PRIOR_LOSSES, default=None,
                   help="what those examples regress: the base model's own velocity "
                        "(distill, default) or their rendered images (data)")
    p.add_argument("--layout", choices=LAYOUTS, default=None,
                   help="where shapes:<shape> data puts what captions leave free: free or "
                        "canonical, as the base model was trained (default free)")
    p.add_argument("--stand-in", default=None,
                   help="shapes:<shape> data: the known shape --latent-contrast aims away "
                        "from (default auto: the one the autoencoder encodes closest to the "
                        "new shape)")
    p.add_argument("--latent-contrast", type=float, default=None,
                   help="aim the new shape's latents this many times their distance from the "
                        "stand-in's further away from it (default 0: off)")
    p.add_argument("--twin-fraction", type=float, default=None,
                   help="share of the new shape's examples replaced each step by a twin "
                        "(same scene and words, any known shape in its place), which "
                        "regresses the prior loss (default 0: none)")
    p.add_argument("--decoder-steps", type=int, default=None,
                   help="after the transformer's steps, train a LoCon adapter on the "
                        "autoencoder's decoder for this many steps (default 0: none); it is "
                        "saved in the same LoRA file")
    p.add_argument("--decoder-rank", type=int, default=None,
                   help="rank of the decoder adapter (default 16)")
    p.add_argument("--decoder-lr", type=float, default=None,
                   help="peak learning rate of the decoder phase (default 2e-3)")
    p.add_argument("--decoder-loss", choices=DECODER_LOSSES, default=None,
                   help="l1 on pixels (default), or shapes: flux-tiny's autoencoder loss for "
                        "Shapes World images (object-weighted, palette-aware)")
    p.add_argument("--caption-dropout", type=float, default=None)
    p.add_argument("--sample-every", type=int, default=None,
                   help="steps between sample sheets (0: only at the end)")
    p.add_argument("--sample-prompt", action="append", dest="sample_prompts", default=None,
                   help="prompt for the sample sheets (repeatable)")
    p.add_argument("--checkpoint-every", type=int, default=None)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--resume", action="store_true", help="continue the run in --output")
    p.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from fluxai.lora.train import make_config, train_lora

    values = {k: v for k, v in vars(args).items() if k not in ("preset", "resume", "run")}
    cfg = make_config(args.preset, **values)
    path = train_lora(cfg, resume=args.resume)
    print(path)
    return 0
