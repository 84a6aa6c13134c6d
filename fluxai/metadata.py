"""Generation parameters inside PNGs: written with every image, read back to replay it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from PIL import Image, PngImagePlugin

from fluxai.atomic import atomic_path

KEY = "fluxai"


def save_png(image: Image.Image, path: Path, params: dict[str, Any]) -> None:
    """Write atomically (temporary file, then rename): a failure never leaves half an image."""
    info = PngImagePlugin.PngInfo()
    info.add_text(KEY, json.dumps(params, sort_keys=True))
    if params.get("prompt"):
        info.add_text("prompt", str(params["prompt"]))
    with atomic_path(path) as tmp:
        image.save(tmp, format="PNG", pnginfo=info)


def read_params(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    try:
        with Image.open(path) as img:
            text = img.text.get(KEY) if hasattr(img, "text") else None
    except OSError as e:
        raise ValueError(f"{path} is not a readable image: {e}") from None
    if text is None:
        raise ValueError(f"{path} carries no fluxai generation parameters")
    return json.loads(text)
