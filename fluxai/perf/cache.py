"""Step caching (First-Block-Cache style): skip most of the transformer when a step changes little.

Adjacent sampling steps feed the model similar inputs, and the residual the first double block
adds is a cheap, faithful probe of how different this step is from the last one computed. When
its relative L1 change is below `threshold`, the remaining blocks are skipped and the residual
they added last time is added again. Threshold 0 never skips; 0.05-0.15 is the useful range.
The first step of each sampling run is always computed (`reset` marks its start).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from torch import Tensor

from fluxai.model.transformer import Flux


@dataclass
class StepCache:
    threshold: float
    computed: int = 0
    skipped: int = 0
    _probe: Tensor | None = field(default=None, repr=False)  # first block's residual, last computed
    # What blocks 2.. added to the image tokens; the head reads only those, so text is not kept.
    _rest: Tensor | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if not self.threshold >= 0:
            raise ValueError(f"cache threshold must be >= 0, got {self.threshold}")

    def reset(self) -> None:
        self._probe = self._rest = None
        self.computed = self.skipped = 0

    def _similar(self, probe: Tensor) -> bool:
        if self._probe is None or self._probe.shape != probe.shape or self.threshold == 0:
            return False
        change = (probe - self._probe).abs().mean() / self._probe.abs().mean().clamp_min(1e-12)
        return bool(change < self.threshold)

    def run(self, model: Flux, img: Tensor, txt: Tensor, vec: Tensor, pe: Tensor) -> Tensor:
        """The blocks and head of `model` on prepared inputs, reusing work where allowed."""
        if len(model.double_blocks) == 0:
            self.computed += 1
            return model.head(model.run_single_blocks(img, txt, vec, pe), txt.shape[1], vec)
        img1, txt1 = model.double_blocks[0](img, txt, vec, pe)
        probe = img1 - img
        if self._rest is not None and self._similar(probe):
            self.skipped += 1
            out = img1 + self._rest
            return model.head(out, txt1.shape[1], vec)
        self.computed += 1
        img2, txt2 = model.run_double_blocks(img1, txt1, vec, pe, start=1)
        out = model.run_single_blocks(img2, txt2, vec, pe)
        self._probe, self._rest = probe, out - img1
        return model.head(out, txt1.shape[1], vec)


def enable_step_cache(model: Flux, threshold: float) -> StepCache | None:
    """Attach a step cache to `model`; threshold 0 removes it (every step fully computed)."""
    cache = StepCache(threshold) if threshold != 0 else None  # StepCache refuses negatives
    model.step_cache = cache
    return cache
