"""Drawing Shapes World scenes: the one definition of each shape's geometry.

Coverage is computed by supersampling, so edges are anti-aliased the way the contract allows;
the judge draws its IoU templates with the same `shape_mask`, so the two can never disagree
about what a star is.
"""

from __future__ import annotations

import math

import numpy as np

from fluxai.shapes.world import WORLD, Scene


def _polygon_inside(px: np.ndarray, py: np.ndarray, vertices: list[tuple[float, float]]
                    ) -> np.ndarray:
    """Even-odd rule, vectorised over points (a loop over the few edges only)."""
    inside = np.zeros(px.shape, dtype=bool)
    n = len(vertices)
    for i in range(n):
        x1, y1 = vertices[i]
        x2, y2 = vertices[(i + 1) % n]
        crosses = (y1 > py) != (y2 > py)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_at = x1 + (py - y1) * (x2 - x1) / (y2 - y1)
        inside ^= crosses & (px < x_at)
    return inside


def star_vertices(cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    inner = WORLD.star_inner_ratio * r
    pts = []
    for k in range(10):
        angle = -math.pi / 2 + k * math.pi / 5  # first point straight up (y grows downwards)
        rad = r if k % 2 == 0 else inner
        pts.append((cx + rad * math.cos(angle), cy + rad * math.sin(angle)))
    return pts


def hexagon_vertices(cx: float, cy: float, r: float) -> list[tuple[float, float]]:
    return [(cx + r * math.cos(k * math.pi / 3), cy + r * math.sin(k * math.pi / 3))
            for k in range(6)]


def inside(shape: str, px: np.ndarray, py: np.ndarray, cx: float, cy: float, r: float
           ) -> np.ndarray:
    """Boolean: which points (px, py) lie inside the shape centred on (cx, cy) with radius r."""
    dx, dy = px - cx, py - cy
    if shape == "circle":
        return dx * dx + dy * dy <= r * r
    if shape == "square":
        return (np.abs(dx) <= r) & (np.abs(dy) <= r)
    if shape == "triangle":
        # Apex at the top centre, base along the bottom edge: half-width grows from 0 to r.
        return (dy <= r) & (np.abs(dx) <= (dy + r) / 2)
    if shape == "diamond":
        return np.abs(dx) + np.abs(dy) <= r
    if shape == "cross":
        half = WORLD.cross_bar_width_ratio * r  # bar width 0.4 * 2r
        within = (np.abs(dx) <= r) & (np.abs(dy) <= r)
        return within & ((np.abs(dx) <= half) | (np.abs(dy) <= half))
    if shape == "star":
        return _polygon_inside(px, py, star_vertices(cx, cy, r))
    if shape == "hexagon":
        return _polygon_inside(px, py, hexagon_vertices(cx, cy, r))
    raise ValueError(f"unknown shape {shape!r}; known: {', '.join(WORLD.all_shapes)}")


def shape_mask(shape: str, cx: float, cy: float, r: float, width: int, height: int,
               supersample: int = 4) -> np.ndarray:
    """Coverage in [0, 1] of each pixel of a (height, width) canvas (pixel centres at i + 0.5)."""
    mask = np.zeros((height, width), dtype=np.float32)
    x0, x1 = max(0, math.floor(cx - r) - 1), min(width, math.ceil(cx + r) + 1)
    y0, y1 = max(0, math.floor(cy - r) - 1), min(height, math.ceil(cy + r) + 1)
    if x0 >= x1 or y0 >= y1:
        return mask
    offsets = (np.arange(supersample) + 0.5) / supersample
    xs = (np.arange(x0, x1)[:, None] + offsets[None]).reshape(-1)
    ys = (np.arange(y0, y1)[:, None] + offsets[None]).reshape(-1)
    px, py = np.meshgrid(xs, ys)
    hit = inside(shape, px, py, cx, cy, r).astype(np.float32)
    hit = hit.reshape(y1 - y0, supersample, x1 - x0, supersample).mean(axis=(1, 3))
    mask[y0:y1, x0:x1] = hit
    return mask


def render(scene: Scene, supersample: int = 1) -> np.ndarray:
    """The scene as an (H, W, 3) uint8 sRGB image.

    Hard edges by default: an anti-aliased edge pixel between two palette colours often
    quantises to a third one, and along straight edges those pixels join into components a
    judge following the contract counts as objects. `supersample > 1` anti-aliases anyway.
    """
    palette = WORLD.palette
    canvas = np.empty((scene.height, scene.width, 3), dtype=np.float32)
    canvas[:] = palette[scene.background]
    for obj in scene.objects:
        alpha = shape_mask(obj.shape, obj.cx, obj.cy, obj.r, scene.width, scene.height,
                           supersample)[..., None]
        canvas = canvas * (1 - alpha) + np.asarray(palette[obj.color], np.float32) * alpha
    return np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
