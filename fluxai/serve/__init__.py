"""`fluxai serve`: the image API (OpenAI / BFL shapes, async jobs), its workers and web page."""

from fluxai.serve.config import Limits, ServeConfig

__all__ = ["Limits", "ServeConfig", "create_app"]


def __getattr__(name: str):
    # FastAPI and friends load only when a server is actually built.
    if name == "create_app":
        from fluxai.serve.app import create_app

        return create_app
    raise AttributeError(f"module 'fluxai.serve' has no attribute {name!r}")
