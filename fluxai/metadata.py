"""Generation parameters inside PNGs: written with every image, read back to replay it."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from PIL import Image, PngImagePlugin

KEY = "fluxai"


def save_png(image: Image.Image, path: Path, params: dict[str, Any]) -> None:
    """Write atomically (temporary file, then rename): a failure never leaves half an image."""
    info = PngImagePlugin.PngInfo()
    info.add_text(KEY, json.dumps(params, sort_keys=True))
    if params.get("prompt"):
        info.add_text("prompt", str(params["prompt"]))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".", suffix=".png.tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            image.save(f, format="PNG", pnginfo=info)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
