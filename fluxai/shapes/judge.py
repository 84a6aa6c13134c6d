"""Judging an image against a prompt, from the Shapes World contract alone.

Detection is exactly the contract's "Judging an image": every pixel is quantised to its
nearest palette colour (background colours included), the background is the most frequent
background colour, each object colour's 8-connected components below `min_component_area` of
the canvas are dropped, and each remaining component's shape is the template (one per shape,
drawn by `render.shape_mask`, the renderer's own geometry) with the best IoU inside the
component's bounding box. The verdict then applies the contract's table per kind, plus any
size, grid position and background the prompt names.

Rules the contract leaves to the judge, fixed here so they are honest and written down:
- An object's centre and radius come from its bounding box through its template: a star's box
  is not the 2r square (its lower points sit 0.81 r below the centre), so the template says
  where the centre sits in the box and how big the box is per unit radius.
- Size: the measured radius, as a fraction of the canvas side S = min(W, H), belongs to the
  size band [n(1 - jitter), n(1 + jitter)] nearest to it (log distance), and must lie within
  SIZE_TOLERANCE of that band. So a small object never passes as medium, and a quantised edge
  (a pixel or so of radius) cannot fail a true size.
- Grid position: the 3x3 cell that contains the centre.
- Relations compare centres with the contract's `relation_margin` times S.
- "a triangle, and it is green" means some triangle is green; two-object kinds need two
  distinct objects, one for each half of the prompt; counting needs exactly `count` objects of
  the shape, every one of them with the attributes the prompt names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cache, lru_cache
from itertools import permutations

import numpy as np
from PIL import Image
from scipy import ndimage

from fluxai.shapes.world import WORLD, ObjectSpec, PromptSpec, relation_holds

SIZE_TOLERANCE = 1.25  # a radius up to 25% outside its size band still counts as that size
_TEMPLATE_RADIUS = 64.0  # reference radius, pixels, at which templates are drawn and cropped
_CELLS = {tuple(v): k for k, v in WORLD.positions.items()}


@dataclass(frozen=True)
class Detected:
    """One object found in an image. bbox is (x0, y0, x1, y1), x1 and y1 exclusive."""

    shape: str
    color: str
    cx: float
    cy: float
    area: int
    bbox: tuple[int, int, int, int]
    iou: float
    r: float = 0.0  # radius estimated from the box through the shape's template

    def describe(self) -> str:
        return f"{self.color} {self.shape} at ({self.cx:.0f}, {self.cy:.0f}) r={self.r:.1f}"


@dataclass(frozen=True)
class Analysis:
    width: int
    height: int
    background: str
    objects: list[Detected]


@dataclass(frozen=True)
class Verdict:
    correct: bool
    reason: str
    objects: list[Detected] = field(default_factory=list)
    background: str | None = None


# -- detection --------------------------------------------------------------------------------

def to_rgb_array(image: np.ndarray | Image.Image) -> np.ndarray:
    """A PIL image or an (H, W, 3) array (uint8, or float in [0, 1]) as uint8 RGB."""
    if isinstance(image, Image.Image):
        return np.asarray(image.convert("RGB"))
    arr = np.asarray(image)
    if arr.ndim != 3 or arr.shape[2] not in (3, 4):
        raise ValueError(f"expected an (H, W, 3) image, got an array of shape {arr.shape}")
    arr = arr[..., :3]
    if arr.dtype != np.uint8:
        arr = np.clip(np.rint(arr.astype(np.float64) * 255.0), 0, 255).astype(np.uint8)
    return arr


def quantise(image: np.ndarray | Image.Image) -> tuple[np.ndarray, list[str]]:
    """Index into the palette's names of each pixel's nearest palette colour (Euclidean RGB)."""
    names = list(WORLD.palette)
    colors = np.array([WORLD.palette[n] for n in names], dtype=np.int32)
    rgb = to_rgb_array(image).astype(np.int32)
    # Distances per distinct colour, not per pixel: images hold far fewer colours than pixels.
    packed = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    distinct, inverse = np.unique(packed.ravel(), return_inverse=True)
    unique_rgb = np.stack([distinct >> 16, (distinct >> 8) & 255, distinct & 255], axis=-1)
    dist = ((unique_rgb[:, None, :] - colors[None]) ** 2).sum(-1)
    return dist.argmin(-1)[inverse].reshape(packed.shape), names


@dataclass(frozen=True)
class _Template:
    mask: np.ndarray  # coverage cropped to the template's own bounding box
    centre: tuple[float, float]  # where the shape's centre sits, as fractions of the box
    extent: tuple[float, float]  # box width and height per unit radius


@cache
def _template(shape: str) -> _Template:
    from fluxai.shapes.render import shape_mask

    side = int(2 * _TEMPLATE_RADIUS) + 8
    c = side / 2
    cov = shape_mask(shape, c, c, _TEMPLATE_RADIUS, side, side, supersample=4)
    ys, xs = np.nonzero(cov >= 0.5)
    x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
    w, h = x1 - x0, y1 - y0
    return _Template(cov[y0:y1, x0:x1].copy(), ((c - x0) / w, (c - y0) / h),
                     (w / _TEMPLATE_RADIUS, h / _TEMPLATE_RADIUS))


@lru_cache(maxsize=4096)
def _template_in_box(shape: str, width: int, height: int) -> np.ndarray:
    """The shape's template resized to a width x height box, as a boolean mask."""
    t = _template(shape).mask
    resized = Image.fromarray(t.astype(np.float32), mode="F").resize(
        (width, height), Image.Resampling.BOX)
    return np.asarray(resized) >= 0.5


def classify(component: np.ndarray) -> tuple[str, float]:
    """Best shape and its IoU for a boolean mask cropped to its own bounding box."""
    h, w = component.shape
    area = component.sum()
    best, best_iou = "", -1.0
    for shape in WORLD.all_shapes:
        t = _template_in_box(shape, w, h)
        inter = np.logical_and(t, component).sum()
        iou = inter / (area + t.sum() - inter)
        if iou > best_iou:
            best, best_iou = shape, float(iou)
    return best, best_iou


def _background(labels: np.ndarray, names: list[str]) -> str:
    counts = np.bincount(labels.ravel(), minlength=len(names))
    return max(WORLD.backgrounds, key=lambda n: counts[names.index(n)])


def analyse(image: np.ndarray | Image.Image) -> Analysis:
    """The background and every object of an image, as the contract's judge sees them."""
    labels, names = quantise(image)
    height, width = labels.shape
    background = _background(labels, names)
    min_area = WORLD.min_component_area * width * height
    structure = np.ones((3, 3), dtype=bool)  # 8-connected
    found: list[Detected] = []
    for color in WORLD.object_colors:
        if color == background:
            continue
        comp, n = ndimage.label(labels == names.index(color), structure=structure)
        if n == 0:
            continue
        areas = np.bincount(comp.ravel())
        for i, sl in enumerate(ndimage.find_objects(comp), start=1):
            if sl is None or areas[i] < min_area:
                continue
            mask = comp[sl] == i
            shape, iou = classify(mask)
            t = _template(shape)
            y0, x0 = sl[0].start, sl[1].start
            h, w = mask.shape
            r = (w / t.extent[0] + h / t.extent[1]) / 2
            found.append(Detected(shape, color, x0 + t.centre[0] * w, y0 + t.centre[1] * h,
                                  int(areas[i]), (x0, y0, x0 + w, y0 + h), iou, r))
    found.sort(key=lambda d: (d.cy, d.cx))
    return Analysis(width, height, background, found)


def detect(image: np.ndarray | Image.Image) -> list[Detected]:
    """Every object the contract's judge finds in an image."""
    return analyse(image).objects


# -- attributes -------------------------------------------------------------------------------

def size_of(radius: float, side: int) -> str | None:
    """The size band a radius belongs to, or None if it is too far from every band."""
    rho = radius / side
    best, best_dist = None, math.inf
    for name, nominal in WORLD.sizes.items():
        lo, hi = nominal * (1 - WORLD.size_jitter), nominal * (1 + WORLD.size_jitter)
        dist = 0.0 if lo <= rho <= hi else min(abs(math.log(rho / lo)), abs(math.log(rho / hi)))
        if dist < best_dist:
            best, best_dist = name, dist
    return best if best_dist <= math.log(SIZE_TOLERANCE) else None


def cell_of(cx: float, cy: float, width: int, height: int) -> str:
    col = min(2, max(0, int(3 * cx / width)))
    row = min(2, max(0, int(3 * cy / height)))
    return _CELLS[(col, row)]


def mismatch(d: Detected, want: ObjectSpec, width: int, height: int) -> str | None:
    """Why a detected object is not what a prompt's object asks for (None: it is)."""
    if d.shape != want.shape:
        return f"is a {d.shape}"
    if want.color is not None and d.color != want.color:
        return f"is {d.color}"
    if want.size is not None:
        size = size_of(d.r, min(width, height))
        if size != want.size:
            return f"is {size or 'of no contract size'} (r={d.r:.1f}px)"
    if want.position is not None:
        cell = cell_of(d.cx, d.cy, width, height)
        if cell != want.position:
            return f"is in the {cell} cell"
    return None


def describe_spec(o: ObjectSpec) -> str:
    words = [w for w in (o.size, o.color, o.shape) if w]
    text = " ".join(words)
    return f"{text} in the {o.position} cell" if o.position else text


# -- verdicts ---------------------------------------------------------------------------------

def _found_list(objects: list[Detected]) -> str:
    return ", ".join(f"{d.color} {d.shape}" for d in objects) or "nothing"


def _judge_counting(a: Analysis, spec: PromptSpec) -> tuple[bool, str]:
    want = spec.objects[0]
    same = [d for d in a.objects if d.shape == want.shape]
    plural = WORLD.plurals[want.shape]
    if len(same) != spec.count:
        return False, f"found {len(same)} {plural}, wanted exactly {spec.count}"
    for d in same:
        why = mismatch(d, want, a.width, a.height)
        if why:
            return False, f"the {d.describe()} {why}, wanted {describe_spec(want)}"
    return True, f"exactly {spec.count} {plural}" + (f" ({want.color})" if want.color else "")


def _judge_objects(a: Analysis, spec: PromptSpec) -> tuple[bool, str]:
    wants = list(spec.objects)
    candidates = [[d for d in a.objects if mismatch(d, w, a.width, a.height) is None]
                  for w in wants]
    for w, cands in zip(wants, candidates, strict=True):
        if not cands:
            return False, f"no {describe_spec(w)} (found: {_found_list(a.objects)})"
    side = min(a.width, a.height)
    # Few objects per image: trying every assignment of distinct objects is cheap.
    assignments = [c for c in permutations(a.objects, len(wants))
                   if all(d in cands for d, cands in zip(c, candidates, strict=True))]
    if not assignments:
        return False, ("needs distinct objects for "
                       + " and ".join(describe_spec(w) for w in wants)
                       + f" (found: {_found_list(a.objects)})")
    for chosen in assignments:
        if spec.relation is None or relation_holds(chosen[0], chosen[1], spec.relation, side):
            return True, "found " + "; ".join(d.describe() for d in chosen)
    first, second = assignments[0]
    return False, (f"the {describe_spec(wants[0])} is not {spec.relation} the "
                   f"{describe_spec(wants[1])} ({first.describe()}; {second.describe()})")


def judge_analysis(a: Analysis, spec: PromptSpec) -> Verdict:
    """The verdict for an already analysed image."""
    if spec.kind not in WORLD.kinds:
        raise ValueError(f"unknown kind {spec.kind!r}; known: {', '.join(WORLD.kinds)}")
    if spec.background is not None and a.background != spec.background:
        return Verdict(False, f"background is {a.background}, wanted {spec.background}",
                       a.objects, a.background)
    if spec.kind == "counting":
        ok, reason = _judge_counting(a, spec)
    else:
        ok, reason = _judge_objects(a, spec)
    return Verdict(ok, reason, a.objects, a.background)


def judge(image: np.ndarray | Image.Image, spec: PromptSpec) -> Verdict:
    """Is the image correct for the prompt, by the contract's table? With the reason."""
    return judge_analysis(analyse(image), spec)
