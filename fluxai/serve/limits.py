"""Who may call and how often: API keys, per-key token buckets (429 + Retry-After), and a cap on
request body size (413) enforced while the body streams in."""

from __future__ import annotations

import hashlib
import json
import math
import threading
import time
from typing import Any

from fluxai.serve.errors import ApiError


def bearer(headers: Any) -> str | None:
    value = headers.get("authorization") or ""
    scheme, _, token = value.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


class KeyCheck:
    """No keys configured: everyone is welcome. Otherwise `Authorization: Bearer <key>`."""

    def __init__(self, keys: frozenset[str]):
        self.keys = keys

    def identify(self, headers: Any, client: str) -> str:
        """The identity rate limits count against: the key's hash, or the client address."""
        token = bearer(headers)
        if not self.keys:
            return f"ip:{client}"
        if token is None:
            raise ApiError(401, "Missing API key: send 'Authorization: Bearer <key>'.",
                           type="invalid_request_error", code="missing_api_key")
        if token not in self.keys:
            raise ApiError(401, "Incorrect API key provided.", type="invalid_request_error",
                           code="invalid_api_key")
        return "key:" + hashlib.sha256(token.encode()).hexdigest()[:16]


class RateLimiter:
    """A token bucket per identity: `per_minute` refill, `burst` capacity. Per API replica."""

    def __init__(self, per_minute: float, burst: int):
        self.rate = per_minute / 60.0
        self.burst = max(1, burst)
        self._buckets: dict[str, tuple[float, float]] = {}
        self._lock = threading.Lock()

    def take(self, identity: str) -> None:
        if self.rate <= 0:
            return
        now = time.monotonic()
        with self._lock:
            tokens, last = self._buckets.get(identity, (float(self.burst), now))
            tokens = min(self.burst, tokens + (now - last) * self.rate)
            if tokens < 1.0:
                self._buckets[identity] = (tokens, now)
                wait = math.ceil((1.0 - tokens) / self.rate)
                raise ApiError(429, f"Rate limit reached: {self.rate * 60:g} requests per "
                               f"minute (burst {self.burst}); retry in {wait} s.",
                               type="requests", code="rate_limit_exceeded",
                               headers={"Retry-After": str(wait)})
            self._buckets[identity] = (tokens - 1.0, now)


class BodyLimit:
    """ASGI middleware: refuse bodies over `max_bytes`, by Content-Length when given and by
    counting otherwise, before anything parses them."""

    def __init__(self, app: Any, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await self._refuse(send)
            return
        seen = 0

        async def counted() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise _TooLarge
            return message

        try:
            await self.app(scope, counted, send)
        except _TooLarge:
            await self._refuse(send)

    async def _refuse(self, send: Any) -> None:
        body = json.dumps(ApiError(413, f"Request body is larger than {self.max_bytes} bytes.",
                                   code="request_too_large").body()).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass
