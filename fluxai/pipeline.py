"""`FluxPipeline`: text (and optionally an image) to images, shaped like diffusers' FluxPipeline.

Users' diffusers code ports unchanged: same constructor names, same call arguments, same seed
behaviour (noise drawn from a CPU generator in one call for the whole batch), `.images` out.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from tqdm import tqdm

from fluxai.config import SamplingDefaults
from fluxai.model.autoencoder import AutoEncoder
from fluxai.model.transformer import Flux
from fluxai.sampling import (
    Conditioning,
    check_size,
    denoise,
    image_ids,
    img2img_start,
    latent_shape,
    make_noise,
    pack,
    schedule,
    text_ids,
    unpack,
)
from fluxai.text.base import CachedTextEncoder, TextEncoder

ImageInput = Image.Image | np.ndarray | Tensor


@dataclass
class FluxPipelineOutput:
    images: Any
    parameters: list[dict[str, Any]] = field(default_factory=list)  # one dict per image


def _to_list(prompt: str | list[str] | None) -> list[str] | None:
    return [prompt] if isinstance(prompt, str) else prompt


def image_to_tensor(image: ImageInput, width: int, height: int) -> Tensor:
    """A PIL image, HWC uint8/float array or CHW/BCHW [0, 1] tensor -> (1|B, 3, H, W) in [-1, 1]."""
    if isinstance(image, Tensor):
        x = image if image.ndim == 4 else image[None]
        return x.float() * 2 - 1
    if isinstance(image, np.ndarray):
        image = Image.fromarray(image if image.dtype == np.uint8 else
                                (np.clip(image, 0, 1) * 255).round().astype(np.uint8))
    image = image.convert("RGB")
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.LANCZOS)
    x = torch.from_numpy(np.array(image)).permute(2, 0, 1).float() / 127.5 - 1
    return x[None]


def postprocess(decoded: Tensor, output_type: str) -> Any:
    x = (decoded.float() / 2 + 0.5).clamp(0, 1)
    if output_type == "pt":
        return x
    arr = x.permute(0, 2, 3, 1).cpu().numpy()
    if output_type == "np":
        return arr
    return [Image.fromarray((a * 255).round().astype(np.uint8)) for a in arr]


class FluxPipeline:
    def __init__(
        self,
        transformer: Flux,
        vae: AutoEncoder,
        text_encoder: TextEncoder,
        defaults: SamplingDefaults | None = None,
        name: str = "flux",
    ):
        self.transformer = transformer
        self.vae = vae
        self.text_encoder = (text_encoder if isinstance(text_encoder, CachedTextEncoder)
                             else CachedTextEncoder(text_encoder))
        self.defaults = defaults or SamplingDefaults()
        self.name = name
        self._progress = True

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, name_or_path: str | Path, torch_dtype: torch.dtype | None = None,
                        device: str | torch.device | None = None, **kwargs: Any) -> FluxPipeline:
        """A model name (`flux-tiny`, ...), a local fluxai or diffusers folder, or a hub id.

        Optional speed/memory switches: `quantize` (int8wo, int8dq, fp8wo, fp8dq, int4wo, nf4),
        `memory` (max, balanced, low, 8gb), `cache_threshold` (step caching, 0 = off),
        `compile` (regional torch.compile); see fluxai.perf.
        """
        from fluxai.perf.options import PerfOptions, check_options, configure
        from fluxai.registry import load_pipeline_parts

        # Speed/memory switches (fluxai.perf): checked before loading, applied after.
        perf = PerfOptions(kwargs.pop("quantize", None), kwargs.pop("memory", None),
                           kwargs.pop("cache_threshold", 0.0), kwargs.pop("compile", False))
        check_options(perf, device)
        parts = load_pipeline_parts(str(name_or_path), dtype=torch_dtype, **kwargs)
        pipe = cls(**parts)
        if perf.any:
            return configure(pipe, device, perf)
        return pipe.to(device) if device is not None else pipe

    @classmethod
    def from_single_file(cls, path: str | Path, torch_dtype: torch.dtype | None = None,
                         **kwargs: Any) -> FluxPipeline:
        """A single transformer checkpoint (BFL, ComfyUI or fp8), with the other parts given or
        taken from the matching FLUX.1 release."""
        from fluxai.registry import load_single_file_parts

        return cls(**load_single_file_parts(Path(path), dtype=torch_dtype, **kwargs))

    def to(self, device: str | torch.device | None = None, dtype: torch.dtype | None = None
           ) -> FluxPipeline:
        from fluxai.perf.compile import weights_changed

        self.transformer.to(device=device, dtype=dtype)
        weights_changed(self.transformer)
        self.vae.to(device=device, dtype=dtype)
        if device is not None:
            self.text_encoder.to(device)
        return self

    def set_progress_bar_config(self, disable: bool = False, **_: Any) -> None:
        self._progress = not disable

    # -- LoRA: diffusers' method names, delegating to fluxai.lora.LoraAdapters -----------------
    @property
    def lora(self) -> Any:
        if "_lora" not in self.__dict__:
            from fluxai.lora import LoraAdapters

            self._lora = LoraAdapters(self.transformer, self.vae)
        return self._lora

    def load_lora_weights(self, pretrained_model_name_or_path_or_dict: Any,
                          adapter_name: str | None = None, weight_name: str | None = None,
                          **_: Any) -> Any:
        """Any supported LoRA format; all or nothing. Returns a `LoadReport`."""
        return self.lora.load(pretrained_model_name_or_path_or_dict, adapter_name, weight_name)

    def set_adapters(self, adapter_names: str | list[str],
                     adapter_weights: float | list[float] | None = None) -> None:
        self.lora.set_adapters(adapter_names, adapter_weights)

    def get_active_adapters(self) -> list[str]:
        return list(self.lora.active)

    def get_list_adapters(self) -> dict[str, list[str]]:
        lora = self.lora
        listed = {"transformer": [n for n, parts in lora.parts.items()
                                  if any(not p.is_conv for p in parts)]}
        decoder = [n for n, parts in lora.parts.items() if any(p.is_conv for p in parts)]
        return listed | ({"vae": decoder} if decoder else {})

    def fuse_lora(self, lora_scale: float = 1.0, adapter_names: list[str] | None = None,
                  **_: Any) -> None:
        self.lora.fuse(lora_scale, adapter_names)

    def unfuse_lora(self, **_: Any) -> None:
        self.lora.unfuse()

    def delete_adapters(self, adapter_names: str | list[str]) -> None:
        self.lora.delete(adapter_names)

    def unload_lora_weights(self) -> None:
        self.lora.unload()

    @property
    def device(self) -> torch.device:
        return next(self.transformer.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        # The compute dtype: fp8 weights kept by the loader (upcast per layer) do not count.
        # Stops at the first non-fp8 parameter (img_in, nearly always): the pipeline asks for
        # its dtype several times per call, and a full parameter walk costs milliseconds.
        fp8 = (torch.float8_e4m3fn, torch.float8_e5m2)
        first = None
        for p in self.transformer.parameters():
            if p.dtype not in fp8:
                return p.dtype
            first = first or p.dtype
        return first

    @property
    def downscale(self) -> int:
        return self.vae.config.downscale

    @property
    def latent_channels(self) -> int:
        return self.vae.config.z_channels

    # -- the call -------------------------------------------------------------------------------
    def encode_prompt(self, prompts: list[str]) -> tuple[Tensor, Tensor]:
        context, pooled = self.text_encoder.encode(prompts)
        return context.to(self.device, self.dtype), pooled.to(self.device, self.dtype)

    def _conditioning(self, context: Tensor, pooled: Tensor, n: int, lh: int, lw: int,
                      guidance: float) -> Conditioning:
        context = context.repeat_interleave(n, dim=0)
        pooled = pooled.repeat_interleave(n, dim=0)
        b = context.shape[0]
        g = None
        if self.transformer.config.guidance_embed:
            g = torch.full((b,), guidance, dtype=torch.float32, device=self.device).to(self.dtype)
        return Conditioning(context, text_ids(b, context.shape[1], self.device).to(self.dtype),
                            pooled, image_ids(lh, lw, b, self.device).to(self.dtype), g)

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        width: int | None = None,
        height: int | None = None,
        num_inference_steps: int | None = None,
        guidance_scale: float | None = None,
        seed: int | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        num_images_per_prompt: int = 1,
        negative_prompt: str | list[str] | None = None,
        true_cfg_scale: float | None = None,
        prompt_embeds: Tensor | None = None,
        pooled_prompt_embeds: Tensor | None = None,
        negative_prompt_embeds: Tensor | None = None,
        negative_pooled_prompt_embeds: Tensor | None = None,
        latents: Tensor | None = None,
        image: ImageInput | None = None,
        strength: float = 0.6,
        callback_on_step_end: Callable[..., dict[str, Tensor] | None] | None = None,
        output_type: str = "pil",
    ) -> FluxPipelineOutput:
        d = self.defaults
        if image is not None and (width is None or height is None) and \
                isinstance(image, Image.Image):
            width, height = width or image.width, height or image.height
        width, height = width or d.width, height or d.height
        steps = d.num_inference_steps if num_inference_steps is None else num_inference_steps
        guidance = d.guidance_scale if guidance_scale is None else guidance_scale
        cfg = d.true_cfg_scale if true_cfg_scale is None else true_cfg_scale
        if negative_prompt is None and negative_prompt_embeds is None and cfg > 1.0:
            negative_prompt = d.negative_prompt
        multiple = 2 * self.downscale
        check_size(width, height, multiple)
        if steps < 1:
            raise ValueError(f"num_inference_steps must be at least 1, got {steps}")
        if num_images_per_prompt < 1:
            raise ValueError(f"num_images_per_prompt must be at least 1, got "
                             f"{num_images_per_prompt}")
        if output_type not in ("pil", "np", "pt", "latent"):
            raise ValueError(f"output_type must be pil, np, pt or latent, got {output_type!r}")

        prompts = _to_list(prompt)
        if prompt_embeds is None:
            if not prompts:
                raise ValueError("give a prompt or prompt_embeds")
            prompt_embeds, pooled_prompt_embeds = self.encode_prompt(prompts)
        elif pooled_prompt_embeds is None:
            raise ValueError("prompt_embeds needs pooled_prompt_embeds as well")
        n_prompts = prompt_embeds.shape[0]
        batch = n_prompts * num_images_per_prompt

        lat_shape = latent_shape(batch, self.latent_channels, height, width, self.downscale)
        lh, lw = lat_shape[2], lat_shape[3]
        cond = self._conditioning(prompt_embeds.to(self.device, self.dtype),
                                  pooled_prompt_embeds.to(self.device, self.dtype),
                                  num_images_per_prompt, lh, lw, guidance)
        negative = None
        use_cfg = cfg > 1.0 and (negative_prompt is not None or negative_prompt_embeds is not None)
        if use_cfg:
            if negative_prompt_embeds is None:
                negs = _to_list(negative_prompt)
                negs = negs * n_prompts if len(negs) == 1 else negs
                if len(negs) != n_prompts:
                    raise ValueError(f"{len(negs)} negative prompts for {n_prompts} prompts")
                negative_prompt_embeds, negative_pooled_prompt_embeds = self.encode_prompt(negs)
            negative = self._conditioning(negative_prompt_embeds, negative_pooled_prompt_embeds,
                                          num_images_per_prompt, lh, lw, guidance)

        if generator is None and seed is not None:
            generator = torch.Generator("cpu").manual_seed(seed)
        seq_len = (lh // 2) * (lw // 2)
        sigmas = schedule(steps, seq_len, d.shift)
        if latents is None:
            noise = make_noise(lat_shape, generator, self.dtype, self.device)
            if image is not None:
                start = img2img_start(sigmas, strength)
                sigmas = sigmas[start:]
                if len(sigmas) < 2:
                    raise ValueError(f"strength {strength} with {steps} steps leaves no step to "
                                     "run; raise strength or steps")
                init = image_to_tensor(image, width, height).to(self.device, self.dtype)
                init = self.vae.encode(init).repeat_interleave(
                    batch // init.shape[0], dim=0)
                noise = sigmas[0] * noise + (1.0 - sigmas[0]) * init
            latents = pack(noise)
        latents = latents.to(self.device, self.dtype)

        bar = tqdm(total=len(sigmas) - 1, disable=not self._progress, desc="denoise")

        def on_step(i: int, t: float, x: Tensor) -> Tensor | None:
            bar.update(1)
            if callback_on_step_end is None:
                return None
            out = callback_on_step_end(self, i, t * 1000.0, {"latents": x})
            return (out or {}).get("latents")

        latents = denoise(self.transformer, latents, cond, sigmas, negative, cfg, on_step)
        bar.close()

        params = {
            "model": self.name, "width": width, "height": height, "num_inference_steps": steps,
            "guidance_scale": guidance, "true_cfg_scale": cfg if use_cfg else 1.0,
            "negative_prompt": negative_prompt if use_cfg else None,
            "strength": strength if image is not None else None,
        }
        per_image = [
            {**params, "prompt": prompts[i // num_images_per_prompt] if prompts else None}
            for i in range(batch)
        ]
        if output_type == "latent":
            return FluxPipelineOutput(latents, per_image)
        decoded = self.vae.decode(unpack(latents, lh, lw))
        return FluxPipelineOutput(postprocess(decoded, output_type), per_image)
