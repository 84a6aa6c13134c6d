"""What each shortcut costs: PSNR and SSIM of its images against full precision, same seeds.

Each shortcut is applied to a fresh copy of the same pipeline, so one shortcut never leaks into
the next; images are compared in [0, 1] RGB.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from fluxai.perf.options import PerfOptions


def psnr(a: Tensor, b: Tensor) -> float:
    """Peak signal-to-noise ratio in dB of images in [0, 1] (inf when identical)."""
    mse = F.mse_loss(a.float(), b.float()).item()
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


def ssim(a: Tensor, b: Tensor, window: int = 11, sigma: float = 1.5) -> float:
    """Mean structural similarity (Wang et al. 2004) of (B, C, H, W) images in [0, 1]."""
    a, b = a.float(), b.float()
    coords = torch.arange(window, dtype=torch.float32) - window // 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    g = (g / g.sum())[None, :] * (g / g.sum())[:, None]
    channels = a.shape[1]
    kernel = g.expand(channels, 1, window, window)

    def blur(x: Tensor) -> Tensor:
        return F.conv2d(x, kernel, groups=channels)

    c1, c2 = 0.01**2, 0.03**2
    mu_a, mu_b = blur(a), blur(b)
    var_a = blur(a * a) - mu_a**2
    var_b = blur(b * b) - mu_b**2
    cov = blur(a * b) - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    return (num / den).mean().item()


@dataclass
class QualityRow:
    shortcut: str
    psnr: float
    ssim: float
    note: str = ""


def shortcut_quality(pipe, shortcuts: dict[str, PerfOptions], seeds: list[int],
                     call: dict, device: str = "cpu",
                     progress: Callable[[str], None] = lambda _m: None) -> list[QualityRow]:
    """PSNR/SSIM of each shortcut's images against `pipe`'s own, image by image, averaged."""
    from fluxai.perf.options import configure

    def images(p) -> Tensor:
        out = [p(generator=torch.Generator("cpu").manual_seed(s), output_type="pt",
                 **call).images for s in seeds]
        return torch.cat(out).float().cpu()

    progress("full precision")
    reference = images(pipe)
    rows = []
    for name, opts in shortcuts.items():
        progress(name)
        candidate = copy.deepcopy(pipe)
        configure(candidate, device, opts)
        got = images(candidate)
        cache = candidate.transformer.step_cache
        note = f"{cache.skipped}/{cache.skipped + cache.computed} steps skipped (last run)" \
            if cache is not None else ""
        scores = [(psnr(got[i : i + 1], reference[i : i + 1]),
                   ssim(got[i : i + 1], reference[i : i + 1])) for i in range(len(seeds))]
        rows.append(QualityRow(name, sum(s[0] for s in scores) / len(scores),
                               sum(s[1] for s in scores) / len(scores), note))
    return rows
