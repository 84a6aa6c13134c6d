"""FLUX.1's own text encoders through `transformers`: T5-XXL for context, CLIP-L for the pooled y.

Tokenisation matches the reference: both pad to their maximum length (T5: 512 for dev, 256 for
schnell; CLIP: 77), truncate longer prompts, and run without an attention mask.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

T5_HUB = "google/t5-v1_1-xxl"
CLIP_HUB = "openai/clip-vit-large-patch14"


class T5ClipEncoder:
    def __init__(
        self,
        t5: str | Path = T5_HUB,
        clip: str | Path = CLIP_HUB,
        max_length: int = 512,
        dtype: torch.dtype = torch.bfloat16,
        device: torch.device | str = "cpu",
        t5_tokenizer: str | Path | None = None,
        clip_tokenizer: str | Path | None = None,
        t5_subfolder: str = "",
        clip_subfolder: str = "",
    ):
        from transformers import CLIPTextModel, CLIPTokenizer, T5EncoderModel, T5TokenizerFast

        self.max_length = max_length
        self.t5_tokenizer = T5TokenizerFast.from_pretrained(
            t5_tokenizer or t5, subfolder=t5_subfolder.replace("text_encoder", "tokenizer")
        )
        self.clip_tokenizer = CLIPTokenizer.from_pretrained(
            clip_tokenizer or clip, subfolder=clip_subfolder.replace("text_encoder", "tokenizer")
        )
        self.t5 = T5EncoderModel.from_pretrained(t5, subfolder=t5_subfolder, torch_dtype=dtype)
        self.clip = CLIPTextModel.from_pretrained(clip, subfolder=clip_subfolder,
                                                  torch_dtype=dtype)
        self.t5.eval().requires_grad_(False)
        self.clip.eval().requires_grad_(False)
        self.context_dim = self.t5.config.d_model
        self.pooled_dim = self.clip.config.hidden_size
        self.to(device)

    def to(self, device: torch.device | str) -> T5ClipEncoder:
        self.device = torch.device(device)
        self.t5.to(self.device)
        self.clip.to(self.device)
        return self

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> tuple[Tensor, Tensor]:
        t5_ids = self.t5_tokenizer(
            prompts, truncation=True, max_length=self.max_length, padding="max_length",
            return_tensors="pt",
        ).input_ids.to(self.device)
        clip_ids = self.clip_tokenizer(
            prompts, truncation=True, max_length=self.clip_tokenizer.model_max_length,
            padding="max_length", return_tensors="pt",
        ).input_ids.to(self.device)
        context = self.t5(input_ids=t5_ids, output_hidden_states=False).last_hidden_state
        pooled = self.clip(input_ids=clip_ids, output_hidden_states=False).pooler_output
        return context, pooled
