"""GenEval-style prompt adherence on the Shapes World: generate, judge, report per kind.

`evaluate_pipeline` is the in-process API (the trainer calls it on its EMA model);
`run_eval` is `fluxai eval shapes`. Every image comes from its own CPU generator seeded by its
seed, so an image depends on (prompt, seed) only, not on the batch it was generated in.
"""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from tqdm import tqdm

from fluxai.atomic import atomic_path
from fluxai.shapes.judge import Analysis, analyse, judge_analysis, to_rgb_array
from fluxai.shapes.parse import parse_prompt
from fluxai.shapes.world import WORLD, ObjectSpec, PromptSpec

Prompt = tuple[str, PromptSpec]
SHEET_TILE = 128  # pixels per image on the contact sheet
SHEET_MAX_TILES = 400  # a larger evaluation shows its first images only


# -- prompts ----------------------------------------------------------------------------------

def spec_to_dict(spec: PromptSpec) -> dict[str, Any]:
    out: dict[str, Any] = {"kind": spec.kind,
                           "objects": [{k: v for k, v in vars(o).items() if v is not None}
                                       for o in spec.objects]}
    for key in ("count", "relation", "background"):
        if getattr(spec, key) is not None:
            out[key] = getattr(spec, key)
    return out


def spec_from_dict(d: dict[str, Any]) -> PromptSpec:
    """A spec written by `spec_to_dict` (or by hand), checked against the contract."""
    if not isinstance(d, dict) or "kind" not in d or "objects" not in d:
        raise ValueError("a spec needs 'kind' and 'objects'")
    if d["kind"] not in WORLD.kinds:
        raise ValueError(f"unknown kind {d['kind']!r}; known: {', '.join(WORLD.kinds)}")
    objects = []
    for o in d["objects"]:
        unknown = set(o) - {"shape", "color", "size", "position"}
        if unknown:
            raise ValueError(f"unknown object field(s) {', '.join(sorted(unknown))}")
        if o.get("shape") not in WORLD.all_shapes:
            raise ValueError(f"unknown shape {o.get('shape')!r}; known: "
                             f"{', '.join(WORLD.all_shapes)}")
        for key, allowed in (("color", WORLD.object_colors), ("size", list(WORLD.sizes)),
                             ("position", list(WORLD.positions))):
            if o.get(key) is not None and o[key] not in allowed:
                raise ValueError(f"unknown {key} {o[key]!r}; known: {', '.join(allowed)}")
        objects.append(ObjectSpec(o["shape"], o.get("color"), o.get("size"), o.get("position")))
    bg = d.get("background")
    if bg is not None and bg not in WORLD.backgrounds:
        raise ValueError(f"unknown background {bg!r}; known: {', '.join(WORLD.backgrounds)}")
    return PromptSpec(d["kind"], tuple(objects), d.get("count"), d.get("relation"), bg)


def load_prompts(path: str | Path) -> list[Prompt]:
    """A prompt file: plain lines (parsed), or JSONL lines {"prompt": ..., "spec": {...}}
    (a line without "spec" is parsed). Blank lines and lines starting with # are skipped."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"prompt file not found: {path}")
    prompts: list[Prompt] = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            if line.startswith("{"):
                record = json.loads(line)
                text = record.get("prompt")
                if not isinstance(text, str):
                    raise ValueError('a JSON line needs a "prompt" string')
                spec = spec_from_dict(record["spec"]) if "spec" in record else parse_prompt(text)
            else:
                text, spec = line, parse_prompt(line)
        except (ValueError, KeyError) as e:  # json.JSONDecodeError is a ValueError
            raise ValueError(f"{path} line {number}: {e}") from None
        prompts.append((text, spec))
    if not prompts:
        raise ValueError(f"{path} holds no prompts")
    return prompts


def interleave_kinds(prompts: Sequence[Prompt]) -> list[Prompt]:
    """Round-robin over kinds (the contract's order), so that the first N prompts of a set
    cover every kind: `--limit` then shortens the evaluation without dropping a kind."""
    by_kind: dict[str, list[Prompt]] = {}
    for p in prompts:
        by_kind.setdefault(p[1].kind, []).append(p)
    queues = [by_kind[k] for k in WORLD.kinds if k in by_kind]
    out: list[Prompt] = []
    for i in range(max((len(q) for q in queues), default=0)):
        out.extend(q[i] for q in queues if i < len(q))
    return out


def _as_prompts(prompts: Iterable[str | Prompt]) -> list[Prompt]:
    return [(p, parse_prompt(p)) if isinstance(p, str) else (p[0], p[1]) for p in prompts]


# -- generation and judging -------------------------------------------------------------------

def _images(output: Any) -> list[np.ndarray]:
    images = output.images if hasattr(output, "images") else output
    return [to_rgb_array(im) for im in images]


def _object_record(d: Any) -> dict[str, Any]:
    return {"shape": d.shape, "color": d.color, "cx": round(d.cx, 1), "cy": round(d.cy, 1),
            "r": round(d.r, 1), "area": d.area, "iou": round(d.iou, 3)}


def summarise(records: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Accuracy per kind (in the contract's order), overall, and on held-out compositions."""
    from fluxai.shapes.scenes import is_held_out

    per_kind: dict[str, dict[str, Any]] = {}
    for kind in WORLD.kinds:
        rs = [r for r in records if r["kind"] == kind]
        if rs:
            correct = sum(r["correct"] for r in rs)
            per_kind[kind] = {"correct": correct, "total": len(rs),
                              "accuracy": round(correct / len(rs), 4)}
    correct = sum(r["correct"] for r in records)
    out: dict[str, Any] = {
        "overall": round(correct / len(records), 4) if records else 0.0,
        "correct": correct, "total": len(records), "per_kind": per_kind,
    }
    held = [r for r in records if is_held_out(spec_from_dict(r["spec"]))]
    if held:
        out["heldout_compositions"] = {
            "correct": sum(r["correct"] for r in held), "total": len(held),
            "accuracy": round(sum(r["correct"] for r in held) / len(held), 4)}
    return out


def evaluate_pipeline(pipe: Any, prompts: Iterable[str | Prompt], seeds: int | Sequence[int] = 2,
                      *, steps: int | None = None, guidance: float | None = None,
                      width: int | None = None, height: int | None = None, batch_size: int = 8,
                      progress: bool = True, return_images: bool = False) -> dict[str, Any]:
    """Generate every (prompt, seed), judge each image, and summarise.

    `pipe` is a `FluxPipeline` (or anything called like one that returns `.images`); prompts
    are texts (parsed) or (text, spec) pairs; `seeds` is K (seeds 0..K-1) or the seeds.
    `guidance` is the distilled guidance of models that embed it, else the true-CFG scale.
    Returns {"overall", "correct", "total", "per_kind", "records", "settings"} (+ "images").
    """
    import torch

    items = _as_prompts(prompts)
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)
    if not items:
        raise ValueError("no prompts to evaluate")
    if not seed_list:
        raise ValueError("seeds must be at least 1")
    if batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {batch_size}")
    call: dict[str, Any] = {}
    if steps is not None:
        call["num_inference_steps"] = steps
    if width is not None:
        call["width"] = width
    if height is not None:
        call["height"] = height
    if guidance is not None:
        transformer = getattr(pipe, "transformer", None)
        guided = getattr(getattr(transformer, "config", None), "guidance_embed", True)
        call["guidance_scale" if guided else "true_cfg_scale"] = guidance
    if hasattr(pipe, "set_progress_bar_config"):
        pipe.set_progress_bar_config(disable=True)  # one bar over images, not one per batch

    jobs = [(i, text, spec, seed) for i, (text, spec) in enumerate(items) for seed in seed_list]
    records: list[dict[str, Any]] = []
    images: list[np.ndarray] = []
    bar = tqdm(total=len(jobs), desc="eval shapes", unit="img", disable=not progress)
    for start in range(0, len(jobs), batch_size):
        batch = jobs[start:start + batch_size]
        generators = [torch.Generator("cpu").manual_seed(seed) for *_, seed in batch]
        out = pipe(prompt=[text for _, text, _, _ in batch], generator=generators,
                   output_type="pil", **call)
        for (index, text, spec, seed), image in zip(batch, _images(out), strict=True):
            size = [image.shape[1], image.shape[0]]  # width, height
            analysis: Analysis = analyse(image)
            verdict = judge_analysis(analysis, spec)
            records.append({
                "index": len(records), "prompt_index": index, "prompt": text, "seed": seed,
                "kind": spec.kind, "spec": spec_to_dict(spec), "correct": verdict.correct,
                "reason": verdict.reason, "background": analysis.background,
                "objects": [_object_record(d) for d in analysis.objects],
            })
            if return_images:
                images.append(image)
        bar.update(len(batch))
        done = sum(r["correct"] for r in records)
        bar.set_postfix(acc=f"{done / len(records):.3f}")
    bar.close()
    result = summarise(records)
    result["settings"] = {"seeds": seed_list, "prompts": len(items), **call,
                          "image_size": size}
    result["records"] = records
    if return_images:
        result["images"] = images
    return result


# -- reporting --------------------------------------------------------------------------------

def format_table(result: dict[str, Any]) -> str:
    lines = [f"{'kind':<16}{'correct':>9}{'total':>7}{'accuracy':>10}"]
    for kind, row in result["per_kind"].items():
        lines.append(f"{kind:<16}{row['correct']:>9}{row['total']:>7}{row['accuracy']:>10.3f}")
    lines.append(f"{'overall':<16}{result['correct']:>9}{result['total']:>7}"
                 f"{result['overall']:>10.3f}")
    if "heldout_compositions" in result:
        h = result["heldout_compositions"]
        lines.append(f"{'held-out comp.':<16}{h['correct']:>9}{h['total']:>7}"
                     f"{h['accuracy']:>10.3f}")
    return "\n".join(lines)


def contact_sheet(images: Sequence[np.ndarray], records: Sequence[dict[str, Any]],
                  columns: int = 8, tile: int = SHEET_TILE) -> Image.Image:
    """Each image with its prompt and verdict (green: correct, red: wrong, with the reason)."""
    font = ImageFont.load_default()
    chars = max(12, tile // 6)
    text_h = 5 * 11 + 4
    n = min(len(images), SHEET_MAX_TILES)
    columns = max(1, min(columns, n))
    rows = (n + columns - 1) // columns
    sheet = Image.new("RGB", (columns * tile, rows * (tile + text_h)), (255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    for k in range(n):
        x, y = (k % columns) * tile, (k // columns) * (tile + text_h)
        im = Image.fromarray(images[k]).resize((tile, tile), Image.Resampling.NEAREST)
        sheet.paste(im, (x, y))
        r = records[k]
        color = (20, 140, 40) if r["correct"] else (200, 30, 30)
        draw.rectangle([x, y, x + tile - 1, y + tile - 1], outline=color, width=2)
        prompt = textwrap.wrap(f"{r['prompt']} (seed {r['seed']})", chars)[:3]
        verdict = textwrap.wrap(("OK " if r["correct"] else "NO ") + r["reason"], chars)[:2]
        for j, line in enumerate(prompt):
            draw.text((x + 2, y + tile + 2 + 11 * j), line, fill=(0, 0, 0), font=font)
        for j, line in enumerate(verdict):
            draw.text((x + 2, y + tile + 2 + 11 * (len(prompt) + j)), line, fill=color,
                      font=font)
    return sheet


def write_report(result: dict[str, Any], images: Sequence[np.ndarray], out: Path,
                 extra: dict[str, Any] | None = None) -> dict[str, Path]:
    """results.json (summary + per-image records) and contact_sheet.png under `out`."""
    out.mkdir(parents=True, exist_ok=True)
    report = {**(extra or {}), **{k: v for k, v in result.items() if k != "images"}}
    paths = {"results": out / "results.json", "sheet": out / "contact_sheet.png"}
    with atomic_path(paths["results"]) as tmp:
        tmp.write_text(json.dumps(report, indent=1) + "\n")
    sheet = contact_sheet(images, result["records"])
    with atomic_path(paths["sheet"]) as tmp:
        sheet.save(tmp, format="PNG")
    return paths


def _check_positive(name: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise ValueError(f"--{name} must be a positive integer, got {value}")


def run_eval(args: argparse.Namespace) -> int:
    """`fluxai eval shapes`: the table on stdout, then the summary as one JSON object."""
    from fluxai.registry import DEFAULT_MODEL
    from fluxai.shapes.captions import eval_prompts

    for name in ("seeds", "steps", "limit", "batch_size"):
        _check_positive(name.replace("_", "-"), getattr(args, name, None))
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a directory")
    prompts = load_prompts(args.prompts) if args.prompts else interleave_kinds(eval_prompts())
    if args.limit is not None:
        prompts = prompts[:args.limit]

    import torch

    from fluxai.cli.generate import pick_device
    from fluxai.pipeline import FluxPipeline

    model = args.model or DEFAULT_MODEL
    device = pick_device(getattr(args, "device", None))
    pipe = FluxPipeline.from_pretrained(model, torch_dtype=torch.float32).to(device)
    loras = []
    if getattr(args, "lora", None):
        from fluxai.cli.lora import apply_loras, resolve_loras

        loras = apply_loras(pipe, resolve_loras(args.lora, None), getattr(args, "quiet", False))
    if getattr(args, "quantize", None) or getattr(args, "memory", None) or \
            getattr(args, "cache_threshold", 0) or getattr(args, "compile", False):
        from fluxai.cli.perf_flags import perf_options
        from fluxai.perf.options import configure

        configure(pipe, device, perf_options(args))
    result = evaluate_pipeline(pipe, prompts, args.seeds, steps=args.steps,
                               guidance=args.guidance, batch_size=getattr(args, "batch_size", 8),
                               progress=not getattr(args, "quiet", False), return_images=True)
    images = result.pop("images")
    extra = {"model": model, "prompts_file": args.prompts or "captions.eval_prompts()"}
    if loras:
        extra["loras"] = loras
    paths = write_report(result, images, out, extra)
    summary = {**extra, **{k: v for k, v in result.items() if k != "records"}}
    print(format_table(result))
    print(json.dumps(summary))
    print(f"wrote {paths['results']} and {paths['sheet']}", file=sys.stderr)
    return 0
