"""Small PNG outputs of a run: the loss curve and image grids (PIL only, no plotting stack)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw


def loss_curve(losses: list[float], path: Path, width: int = 640, height: int = 320) -> None:
    if len(losses) < 2:
        return
    # A running mean over ~1% of the run shows the trend through per-batch noise.
    window = max(1, len(losses) // 100)
    smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
    logs = np.log10(np.maximum(smooth, 1e-8))
    lo, hi = float(logs.min()), float(logs.max()) + 1e-9
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    pad = 30
    xs = pad + np.arange(len(logs)) * (width - 2 * pad) / max(1, len(logs) - 1)
    ys = height - pad - (logs - lo) / (hi - lo) * (height - 2 * pad)
    draw.line(list(zip(xs.tolist(), ys.tolist(), strict=True)), fill=(40, 80, 220), width=2)
    draw.rectangle([pad, pad, width - pad, height - pad], outline=(128, 128, 128))
    draw.text((pad, 8), f"loss (log10) {10**hi:.4f} .. {10**lo:.4f}, {len(losses)} steps",
              fill="black")
    img.save(path)


def image_grid(images: list[Image.Image], labels: list[str] | None = None, cols: int = 4
               ) -> Image.Image:
    w, h = images[0].size
    label_h = 14 if labels else 0
    rows = math.ceil(len(images) / cols)
    grid = Image.new("RGB", (cols * w, rows * (h + label_h)), "white")
    draw = ImageDraw.Draw(grid)
    for i, img in enumerate(images):
        x, y = (i % cols) * w, (i // cols) * (h + label_h)
        grid.paste(img, (x, y + label_h))
        if labels:
            draw.text((x + 2, y + 1), labels[i][: w // 6], fill="black")
    return grid
