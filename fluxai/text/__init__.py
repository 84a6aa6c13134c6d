"""Text encoders: a common interface, an LRU prompt cache, and the concrete encoders."""

from fluxai.text.base import CachedTextEncoder, TextEncoder, build_text_encoder

__all__ = ["CachedTextEncoder", "TextEncoder", "build_text_encoder"]
