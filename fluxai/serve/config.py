"""`ServeConfig`: every knob of the server and its workers in one dataclass (CLI flags map 1:1)."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fluxai.registry import DEFAULT_MODEL


@dataclass(frozen=True)
class Limits:
    """What one request may ask for; every refusal names these bounds."""

    max_side: int = 1024
    min_side: int = 16
    max_pixels: int = 1024 * 1024
    max_n: int = 4
    max_steps: int = 50
    max_prompt_chars: int = 2000
    max_guidance: float = 20.0
    max_body_bytes: int = 64 * 1024


@dataclass
class ServeConfig:
    model: str = DEFAULT_MODEL
    host: str = "127.0.0.1"
    port: int = 8000
    # None: in-process queue and SQLite state; redis://...: Celery workers and Redis state.
    broker: str | None = None
    data_dir: Path = field(default_factory=lambda: Path("fluxai-serve"))
    device: str | None = None
    threads: int | None = None  # torch intra-op threads for the in-process worker
    api_keys: frozenset[str] = frozenset()
    rate_limit: float = 0.0  # requests per minute per key (or per client without keys); 0 = off
    rate_burst: int = 10
    limits: Limits = field(default_factory=Limits)
    cors_origins: tuple[str, ...] = ()
    blocked_terms: tuple[str, ...] = ()
    # Image-level moderation: (image, params) -> True when the image must not be shown.
    moderation: Callable[[Any, dict[str, Any]], bool] | None = None
    lora_dir: Path | None = None  # every *.safetensors in it is a LoRA, named by its stem
    max_batch: int = 8  # images per forward pass in the in-process worker
    batch_wait_ms: float = 20.0  # how long the first job of a batch waits for company
    previews: int = 4  # low-res previews per job (0: none)
    preview_side: int = 64
    sync_timeout_s: float = 600.0
    file_ttl_s: int = 24 * 3600  # result images kept this long in Redis
    visibility_timeout_s: int = 300  # a dead worker's job is redelivered after this
    stale_after_s: float = 30.0  # a running job without a heartbeat this long is taken over
    load_model: bool = True  # False: API-only process (distributed mode)

    @property
    def distributed(self) -> bool:
        return self.broker is not None


def lora_files(lora_dir: Path | None) -> dict[str, Path]:
    """The LoRAs a server offers: name (file stem) -> file."""
    if lora_dir is None:
        return {}
    if not lora_dir.is_dir():
        raise FileNotFoundError(f"LoRA folder not found: {lora_dir}")
    return {p.stem: p for p in sorted(lora_dir.glob("*.safetensors"))}


def keys_from_env(given: list[str] | None) -> frozenset[str]:
    """--api-key flags plus FLUXAI_API_KEYS (comma separated)."""
    keys = {k.strip() for k in (given or [])}
    keys |= {k.strip() for k in os.environ.get("FLUXAI_API_KEYS", "").split(",")}
    return frozenset(k for k in keys if k)


def load_hook(spec: str) -> Callable[[Any, dict[str, Any]], bool]:
    """`package.module:function` -> the function, with a one-line error when it is not there."""
    import importlib

    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"moderation hook {spec!r} must look like package.module:function")
    try:
        hook = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as e:
        raise ValueError(f"cannot load moderation hook {spec!r}: {e}") from None
    if not callable(hook):
        raise ValueError(f"moderation hook {spec!r} is not callable")
    return hook
