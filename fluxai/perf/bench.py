"""Side-by-side benchmark: our pipeline and diffusers' FluxPipeline on identical weights.

Both pipelines are built in one process from one set of weights (ours, seeded random for
presets; written through `save_*(layout="diffusers")` and loaded by diffusers' own
`from_pretrained`, so the comparison also exercises the weight mapping). Both get the same
prompt embeddings and seeds; runs alternate (ours, theirs, ours, ...) after warm-up so that
load on a shared machine hits both alike, and medians are reported.
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from fluxai.perf.flops import gpu_peak_tflops, measured_matmul_tflops, transformer_flops


@dataclass
class BenchSettings:
    model: str = "flux-test-dev"
    width: int | None = None
    height: int | None = None
    steps: int | None = None
    batch: int = 1
    device: str = "cpu"
    dtype: torch.dtype = torch.float32
    warmup: int = 1
    repeats: int = 3
    compile: bool = False
    quantize: str | None = None
    cache_threshold: float = 0.0
    prompt: str = "a red circle above a blue square"
    # "wall" (elapsed time) or "cpu" (this process's CPU time: on a machine shared with other
    # work, CPU time is what the same run would take alone, single-threaded; CPU device only).
    clock: str = "wall"


@dataclass
class RunStats:
    name: str
    image_s: list[float] = field(default_factory=list)  # seconds per call / batch
    step_s: list[float] = field(default_factory=list)  # seconds per step (median of each call)
    forward_s: list[float] = field(default_factory=list)  # seconds inside transformer.forward
    peak_bytes: int = 0

    @property
    def loop_overhead(self) -> float:
        """Per-step time outside the transformer: scheduler, callbacks, Python in the loop."""
        return self.per_step - statistics.median(self.forward_s)

    @property
    def per_image(self) -> float:
        return statistics.median(self.image_s)

    @property
    def per_step(self) -> float:
        return statistics.median(self.step_s)


@dataclass
class BenchReport:
    settings: BenchSettings
    device_name: str
    ours: RunStats
    theirs: RunStats
    step_flops: int
    peak_tflops: float | None
    peak_source: str
    max_abs_diff: float  # between the two pipelines' first images, in [0, 1] pixel units

    @property
    def ratio(self) -> float:
        """Ours / diffusers time per image: below 1 means we are faster."""
        return self.ours.per_image / self.theirs.per_image

    def achieved_fraction(self, stats: RunStats) -> float | None:
        if not self.peak_tflops:
            return None
        return self.step_flops / stats.per_step / 1e12 / self.peak_tflops

    def format(self) -> str:
        s = self.settings
        lines = [
            f"model {s.model}  size {s.width}x{s.height}  steps {s.steps}  batch {s.batch}  "
            f"dtype {str(s.dtype).removeprefix('torch.')}  device {self.device_name}",
            f"options: compile={s.compile} quantize={s.quantize} "
            f"cache_threshold={s.cache_threshold}  (repeats {s.repeats}, warm-up {s.warmup}, "
            f"{s.clock} clock, medians)",
            f"transformer FLOPs/step {self.step_flops / 1e9:.3f} GFLOP; device peak "
            + (f"{self.peak_tflops:.3f} TFLOP/s ({self.peak_source})" if self.peak_tflops
               else "unknown"),
            f"{'':10} {'per image':>12} {'per step':>12} {'loop overhead':>14} {'peak mem':>10} "
            f"{'of peak':>8}",
        ]
        for st in (self.ours, self.theirs):
            frac = self.achieved_fraction(st)
            lines.append(f"{st.name:10} {st.per_image * 1e3:10.1f}ms {st.per_step * 1e3:10.2f}ms "
                         f"{st.loop_overhead * 1e3:12.2f}ms {st.peak_bytes / 2**20:8.0f}MiB "
                         + (f"{frac * 100:7.1f}%" if frac is not None else "       -"))
        lines.append(f"ratio ours/diffusers per image {self.ratio:.3f} "
                     f"(speed-up {1 / self.ratio:.2f}x); max |ours - diffusers| "
                     f"{self.max_abs_diff:.2e}")
        return "\n".join(lines)


class _PeakRSS:
    """Highest resident set size seen while active, sampled every few milliseconds."""

    def __init__(self, interval: float = 0.02):
        import psutil

        self._proc, self._interval = psutil.Process(), interval
        self.peak = 0
        self._stop = threading.Event()

    def __enter__(self) -> _PeakRSS:
        self.peak = self._proc.memory_info().rss
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            time.sleep(self._interval)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(call: Callable[[Callable[..., Any]], Tensor], device: torch.device,
           clock: Callable[[], float] = time.perf_counter) -> tuple[float, float, int, Tensor]:
    """(seconds, median seconds per step, peak bytes, output) of one pipeline call."""
    marks: list[float] = []

    def on_step(*_args: Any, **_kw: Any) -> dict:
        _sync(device)
        marks.append(clock())
        return {}

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        _sync(device)
        t0 = clock()
        out = call(on_step)
        _sync(device)
        elapsed, peak = clock() - t0, torch.cuda.max_memory_allocated(device)
    else:
        with _PeakRSS() as rss:
            t0 = clock()
            out = call(on_step)
            elapsed = clock() - t0
        peak = rss.peak
    steps = [b - a for a, b in zip([t0, *marks[:-1]], marks, strict=True)]
    # The first interval holds the call's setup; later ones are pure steps when there are any.
    return elapsed, statistics.median(steps[1:] or steps), peak, out


def _forward_timer(module: torch.nn.Module, device: torch.device,
                   clock: Callable[[], float]) -> list[float]:
    """Durations of every forward of `module` from now on, appended to the returned list."""
    durations: list[float] = []
    start: list[float] = []

    def before(*_: Any) -> None:
        _sync(device)
        start.append(clock())

    def after(*_: Any) -> None:
        _sync(device)
        durations.append(clock() - start.pop())

    module.register_forward_pre_hook(before)
    module.register_forward_hook(after)
    return durations


def build_pipelines(s: BenchSettings) -> tuple[Any, Any]:
    """Our pipeline and diffusers' on the same weights, both on `s.device` in `s.dtype`."""
    import diffusers

    from fluxai.checkpoints import save_autoencoder, save_transformer
    from fluxai.pipeline import FluxPipeline

    ours = FluxPipeline.from_pretrained(s.model, torch_dtype=torch.float32)
    with tempfile.TemporaryDirectory(prefix="fluxai-bench-") as tmp:
        save_transformer(ours.transformer, Path(tmp) / "transformer", layout="diffusers")
        save_autoencoder(ours.vae, Path(tmp) / "vae", layout="diffusers")
        transformer = diffusers.FluxTransformer2DModel.from_pretrained(Path(tmp) / "transformer")
        vae = diffusers.AutoencoderKL.from_pretrained(Path(tmp) / "vae")
    shift = ours.defaults.shift
    scheduler = diffusers.FlowMatchEulerDiscreteScheduler(
        num_train_timesteps=1000, shift=3.0 if shift else 1.0, use_dynamic_shifting=shift,
        base_shift=0.5, max_shift=1.15, base_image_seq_len=256, max_image_seq_len=4096)
    theirs = diffusers.FluxPipeline(scheduler=scheduler, vae=vae, text_encoder=None,
                                    tokenizer=None, text_encoder_2=None, tokenizer_2=None,
                                    transformer=transformer)
    device = torch.device(s.device)
    ours.to(device, s.dtype)
    theirs.to(device, s.dtype)
    ours.set_progress_bar_config(disable=True)
    theirs.set_progress_bar_config(disable=True)
    return ours, theirs


def apply_speed_options(pipe: Any, s: BenchSettings) -> None:
    """Our opt-in shortcuts, as the CLI and API apply them."""
    if s.quantize:
        from fluxai.perf.quantize import quantize_transformer

        quantize_transformer(pipe.transformer, s.quantize, s.device)
    if s.cache_threshold:
        from fluxai.perf.cache import enable_step_cache

        enable_step_cache(pipe.transformer, s.cache_threshold)
    if s.compile:
        from fluxai.perf.compile import compile_blocks

        compile_blocks(pipe.transformer, cuda_graphs=torch.device(s.device).type == "cuda")


def run_bench(s: BenchSettings, progress: Callable[[str], None] = lambda _m: None
              ) -> BenchReport:
    if s.repeats < 1 or s.warmup < 0 or s.batch < 1:
        raise ValueError("repeats and batch must be at least 1, warm-up at least 0")
    if s.clock not in ("wall", "cpu"):
        raise ValueError(f"clock must be wall or cpu, got {s.clock!r}")
    if s.clock == "cpu" and torch.device(s.device).type != "cpu":
        raise ValueError("--clock cpu measures CPU work: use it with --device cpu")
    clock = time.process_time if s.clock == "cpu" else time.perf_counter
    ours, theirs = build_pipelines(s)
    d = ours.defaults
    s.width, s.height = s.width or d.width, s.height or d.height
    s.steps = s.steps or d.num_inference_steps
    apply_speed_options(ours, s)
    device = torch.device(s.device)
    embeds, pooled = ours.text_encoder.encode([s.prompt] * s.batch)
    embeds, pooled = embeds.to(device, s.dtype), pooled.to(device, s.dtype)
    common = {"width": s.width, "height": s.height, "num_inference_steps": s.steps,
              "guidance_scale": d.guidance_scale, "prompt_embeds": embeds,
              "pooled_prompt_embeds": pooled, "output_type": "pt"}
    if d.true_cfg_scale > 1.0:
        # Models sampled with classifier-free guidance (flux-tiny) run it in both pipelines,
        # against the same negative embeddings, or the comparison would be 2 passes against 1.
        neg, neg_pooled = ours.text_encoder.encode([d.negative_prompt] * s.batch)
        common |= {"true_cfg_scale": d.true_cfg_scale,
                   "negative_prompt_embeds": neg.to(device, s.dtype),
                   "negative_pooled_prompt_embeds": neg_pooled.to(device, s.dtype)}

    def call_ours(cb: Callable[..., Any]) -> Tensor:
        gen = torch.Generator("cpu").manual_seed(0)
        return ours(generator=gen, callback_on_step_end=cb, **common).images

    def call_theirs(cb: Callable[..., Any]) -> Tensor:
        gen = torch.Generator("cpu").manual_seed(0)
        return theirs(generator=gen, callback_on_step_end=cb, **common).images

    stats = {"ours": RunStats("fluxai"), "theirs": RunStats("diffusers")}
    calls = {"ours": call_ours, "theirs": call_theirs}
    forwards = {"ours": _forward_timer(ours.transformer, device, clock),
                "theirs": _forward_timer(theirs.transformer, device, clock)}
    firsts: dict[str, Tensor] = {}
    for i in range(s.warmup + s.repeats):
        for key in ("ours", "theirs"):
            progress(f"{'warm-up' if i < s.warmup else 'run'} {i + 1}: {stats[key].name}")
            forwards[key].clear()
            with torch.no_grad():
                elapsed, step, peak, out = _timed(calls[key], device, clock)
            firsts.setdefault(key, out.float().cpu())
            if i >= s.warmup:
                st = stats[key]
                st.image_s.append(elapsed / s.batch)
                st.step_s.append(step)
                st.forward_s.append(statistics.median(forwards[key]))
                st.peak_bytes = max(st.peak_bytes, peak)
    cfg = ours.transformer.config
    image_tokens = (s.width // 16) * (s.height // 16)
    flops = transformer_flops(cfg, image_tokens, embeds.shape[1], s.batch).total
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        peak, source = gpu_peak_tflops(name), "datasheet dense bf16"
    else:
        import platform

        name = f"CPU ({platform.processor() or platform.machine()}, "
        name += f"{torch.get_num_threads()} threads)"
        peak = measured_matmul_tflops("cpu", s.dtype, clock=clock)
        source = "measured 1024^3 matmul, not a datasheet peak"
    diff = (firsts["ours"] - firsts["theirs"]).abs().max().item()
    return BenchReport(s, name, stats["ours"], stats["theirs"], flops, peak, source, diff)
